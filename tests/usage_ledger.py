"""Usage records booked as the worker books them (billing.services.usage_records_insert), rollups included."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from billing.models import UsageRecord, plain_call
from billing.money import usage_cost
from billing.services import usage_records_insert


def usage_record(*, at: dt.datetime, model: str = "sim/quick", **fields: Any) -> UsageRecord:
    """An answered call at `at`, priced at $1 / $4 per million tokens unless `fields` say otherwise."""
    defaults: dict[str, Any] = {
        "request_id": f"chatcmpl-{uuid.uuid4().hex}",
        "created_at": at,
        "requested": model,
        "model": model,
        "provider": model.split("/")[0] if model else "",
        "status": UsageRecord.Status.OK,
        "input_tokens": 1_000,
        "output_tokens": 500,
        "needs": "",
        "latency_ms": 800,
        "ttft_ms": 120,
        "input_price_per_million": Decimal(1),
        "output_price_per_million": Decimal(4),
    }
    record = UsageRecord(**(defaults | fields))
    if "cost_usd" not in fields and record.input_price_per_million is not None:
        assert record.output_price_per_million is not None
        record.cost_usd = usage_cost(
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            input_per_million=record.input_price_per_million,
            output_per_million=record.output_price_per_million,
        )
    if "plain" not in fields:
        record.plain = plain_call(
            model=record.model,
            cost_usd=record.cost_usd,
            needs=record.needs,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
        )
    return record


def book(*records: UsageRecord) -> list[UsageRecord]:
    """Insert the records in one booking, as the worker does for calls that end together."""
    assert all(usage_records_insert(list(records)))
    return list(records)
