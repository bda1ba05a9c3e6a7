"""Waiting for usage records: the worker inserts an API call's record a moment after the client has its answer."""

from __future__ import annotations

import time
from typing import Any

from django.db.models import QuerySet

from billing.models import UsageRecord


def booked(request_id: str, timeout: float = 15) -> UsageRecord:
    """The call's record, once the worker has inserted it."""
    return all_booked(1, timeout, request_id=request_id).get()


def all_booked(count: int, timeout: float = 15, **filters: Any) -> QuerySet[UsageRecord]:
    """The records matching `filters`, once there are `count` of them (or more)."""
    records = UsageRecord.objects.filter(**filters)
    deadline = time.monotonic() + timeout
    while records.count() < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{records.count()} usage records for {filters or 'all calls'}, not {count}")
        time.sleep(0.02)
    return records
