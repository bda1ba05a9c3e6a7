"""The UTC calendar periods that spend caps count in."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models.functions import TruncHour

from billing.models import SpendCap


def hour_of(moment: dt.datetime) -> dt.datetime:
    """The UTC hour holding `moment`: the grain of the rollups and of the dashboards' periods."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


class UtcHour(TruncHour):
    """hour_of in SQL: a datetime column's UTC hour.

    Django's TruncHour on SQLite calls a Python function per row; strftime
    is SQLite's own, and gives the same text (the column holds UTC).
    """

    def __init__(self, expression: str) -> None:
        super().__init__(expression, tzinfo=dt.UTC)

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, tuple[str | int, ...]]:
        sql, params = compiler.compile(self.lhs)
        return f"strftime('%%Y-%%m-%%d %%H:00:00', {sql})", tuple(params)


def period_bounds(period: str, when: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The UTC calendar day or month holding `when`, as [start, end)."""
    when = when.astimezone(dt.UTC)
    if period == SpendCap.Period.DAY:
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + dt.timedelta(days=1)
    start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def period_adjective(period: str) -> str:
    return "daily" if period == SpendCap.Period.DAY else "monthly"


def moment_text(when: dt.datetime) -> str:
    """A period's end as a message says it: "2026-12-05 00:00 UTC"."""
    return f"{when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
