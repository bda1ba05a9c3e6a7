"""Writes of the billing app: API keys, usage records, and the spend they count for."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.caps.counters import counters_drop, counters_settle, counters_settle_commands
from billing.caps.reservations import reservations_release
from billing.models import ApiKey, Team, UsageRecord, plain_call, tried_several
from billing.money import usage_cost
from billing.rollups.maintain import rollups_add
from fastpath.resp import Command
from routing.catalog import PriceRow
from routing.strategies.capabilities import needed_capabilities

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from routing.calls.spec import CallSpec
    from routing.catalog import CatalogModel

API_KEY_PREFIX = "sk-sy-"

# What a model marked free is booked at, whatever its price book says.
FREE = PriceRow(dt.datetime.min.replace(tzinfo=dt.UTC), Decimal(0), Decimal(0))
VISIBLE_PREFIX_LENGTH = 12


def api_key_hash(raw: str) -> str:
    # Keys are 256 random bits, so a fast hash is as safe as a slow one here.
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, user: User, name: str = "", team: Team | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns it with the plain key, which is never available again."""
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user, team=team, name=name, prefix=raw[:VISIBLE_PREFIX_LENGTH], hashed=api_key_hash(raw)
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


@dataclass(frozen=True)
class UsageBooking:
    spec: CallSpec
    model: CatalogModel | None
    status: str
    attempts: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int
    tokens_estimated: bool
    latency_ms: int
    ttft_ms: int | None
    error_kind: str
    finish_reason: str
    # Parts of input_tokens and output_tokens; 0 for estimated counts.
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # Answers a cascade held back for failing a check (routing/strategies/cascade.py).
    escalations: int = 0
    # What the call paid beyond its answer: those answers, a classifier's call (routing/calls/classify.py).
    extra_cost: Decimal = Decimal(0)
    # Answered from the response cache: no provider was paid; what its model would have cost instead.
    cache_hit: bool = False
    cache_saving: Decimal | None = None

    @classmethod
    def never_ran(cls, spec: CallSpec, error_kind: str, *, latency_ms: int = 0) -> UsageBooking:
        """The booking of a call that ended before any provider saw it: no model, no tokens."""
        return cls(
            spec=spec,
            model=None,
            status="error",
            attempts=[],
            input_tokens=0,
            output_tokens=0,
            tokens_estimated=False,
            latency_ms=latency_ms,
            ttft_ms=None,
            error_kind=error_kind,
            finish_reason="",
        )


def usage_record_new(booking: UsageBooking) -> UsageRecord:
    """The call's usage record, priced at the prices in force when it was made; not saved.

    Reads no database: the prices come with the booking's catalog model.
    """
    spec = booking.spec
    price = price_of(booking.model, spec.created_at) if booking.model else None
    # A call that no model answered still pays for what it asked on the way (a classifier).
    cost = booking.extra_cost if booking.model is None and booking.extra_cost else None
    if price is not None:
        cost = (
            tokens_cost(
                price,
                input_tokens=booking.input_tokens,
                output_tokens=booking.output_tokens,
                cached_input_tokens=booking.cached_input_tokens,
                cache_write_tokens=booking.cache_write_tokens,
            )
            + booking.extra_cost
        )
    if booking.cache_hit:
        cost = booking.extra_cost
    model = booking.model.public_id if booking.model else ""
    needs = ",".join(sorted(needed_capabilities(spec.request)))
    return UsageRecord(
        request_id=spec.call_id,
        created_at=spec.created_at,
        source=spec.source,
        user_id=spec.user_id,
        team_id=spec.team_id,
        api_key_id=spec.api_key_id,
        requested=spec.requested,
        route=spec.route,
        model=model,
        provider=booking.model.provider_name if booking.model else "",
        attempts=booking.attempts,
        fell_back=tried_several(booking.attempts),
        trace={"chain": list(spec.chain), "skipped": list(spec.skipped), "routing": spec.routing},
        input_tokens=booking.input_tokens,
        output_tokens=booking.output_tokens,
        cached_input_tokens=booking.cached_input_tokens,
        cache_write_tokens=booking.cache_write_tokens,
        reasoning_tokens=booking.reasoning_tokens,
        tokens_estimated=booking.tokens_estimated,
        needs=needs,
        plain=plain_call(
            model=model,
            cost_usd=cost,
            needs=needs,
            input_tokens=booking.input_tokens,
            output_tokens=booking.output_tokens,
        ),
        input_price_per_million=price.input_per_million if price else None,
        output_price_per_million=price.output_per_million if price else None,
        cached_input_price_per_million=price.cached_input_price if price else None,
        cache_write_price_per_million=price.cache_write_price if price else None,
        cost_usd=cost,
        latency_ms=booking.latency_ms,
        ttft_ms=booking.ttft_ms,
        status=booking.status,
        error_kind=booking.error_kind,
        finish_reason=booking.finish_reason,
        escalations=booking.escalations,
        extra_cost_usd=booking.extra_cost,
        cache_hit=booking.cache_hit,
        cache_saving_usd=booking.cache_saving,
    )


def price_of(model: CatalogModel, at: dt.datetime) -> PriceRow | None:
    """The price a call to `model` made at `at` is booked at: free for a model marked free, None when unpriced."""
    return FREE if model.free else model.price_at(at)


def tokens_cost(
    price: PriceRow, *, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0, cache_write_tokens: int = 0
) -> Decimal:
    return usage_cost(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        cache_write_tokens=cache_write_tokens,
        input_per_million=price.input_per_million,
        output_per_million=price.output_per_million,
        cached_input_per_million=price.cached_input_price,
        cache_write_per_million=price.cache_write_price,
    )


def usage_records_insert(records: list[UsageRecord]) -> list[bool]:
    """Insert new usage records, and add them to their rollups, in one transaction; False for each booked already.

    One statement and one commit for several calls' records, where each
    alone would cost its own: the worker books the calls that end together
    this way. A call booked already (a redelivered task) is rare: then the
    records are inserted one by one to tell which.
    """
    try:
        with transaction.atomic():
            UsageRecord.objects.bulk_create(records)
            rollups_add(records)
    except IntegrityError:
        return [usage_record_insert(record) for record in records]
    return [True] * len(records)


def usage_record_insert(record: UsageRecord) -> bool:
    """Insert a new usage record and add it to its rollup; False, and nothing written, if its call is booked already."""
    try:
        # Inside a transaction a savepoint, which a failed insert would otherwise break.
        with transaction.atomic():
            record.save(force_insert=True)
            rollups_add([record])
    except IntegrityError:
        return False
    return True


async def spend_count(records: Sequence[UsageRecord]) -> None:
    """Count the cost of newly inserted records where spend caps read it, each once, and free their reservations."""
    await counters_settle(records)


def spend_count_commands(records: Sequence[UsageRecord]) -> list[Command]:
    """spend_count as commands, for a caller that sends them with others (in a MULTI)."""
    return counters_settle_commands(records)


async def spend_recount(record: UsageRecord) -> None:
    """Count a record that may have been counted already (its run died around its booking), from the database."""
    await counters_drop(record)


async def spend_release(call_ids: Sequence[str]) -> None:
    """Free the reservations of calls that will not run (admitted, then never enqueued)."""
    await reservations_release(call_ids)
