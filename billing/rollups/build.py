"""Rollups summed from the raw records in SQL: to check the rollups kept by booking, and to rebuild them.

Both read the same aggregate, grouped by the rollup's slice, so a rollup
that equals it is exact for every figure the dashboards show. The day
rollups are checked against, and rebuilt from, the hour rollups.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import BigIntegerField, Count, F, IntegerField, Max, Min, Model, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Coalesce, Round, TruncDay

from billing.caps.counters import COST_UNITS
from billing.models import UNPRICED, UsageDayRollup, UsageRecord, UsageRollup
from billing.money import UNITS_PER_USD
from billing.periods import UtcHour, hour_of
from billing.rollups.buckets import BOUNDS_MS, LATENCY_COLUMNS, TTFT_COLUMNS
from billing.rollups.maintain import DAY_SLICE, SLICE, SUMS, DaySlice, Slice, day_slices

SAVING_UNITS = Cast(Round(F("cache_saving_usd") * Value(UNITS_PER_USD)), output_field=BigIntegerField())
# The columns each grain of the day rollups keeps of its hour rollups (the others are emptied).
GRAIN_COLUMNS = {
    UsageDayRollup.Grain.MODEL_ROUTE.value: ("model", "route"),
    UsageDayRollup.Grain.USER_KEY.value: ("user_id", "api_key_id"),
}
# Rebuilt or checked a day at a time, so that memory stays bounded by one day's slices.
STEP = dt.timedelta(days=1)


def _bucket_counts(field: str, columns: tuple[str, ...]) -> dict[str, Count]:
    lows = (None, *BOUNDS_MS)
    highs = (*BOUNDS_MS, None)
    counts: dict[str, Count] = {}
    for column, low, high in zip(columns, lows, highs, strict=True):
        match = Q(**{f"{field}__isnull": False})
        if low is not None:
            match &= Q(**{f"{field}__gte": low})
        if high is not None:
            match &= Q(**{f"{field}__lt": high})
        counts[column] = Count("pk", filter=match)
    return counts


def _zero(expression: object) -> Coalesce:
    return Coalesce(expression, Value(0), output_field=IntegerField())


def raw_sums(records: QuerySet[Any]) -> QuerySet[Any, dict[str, Any]]:
    """The records summed per slice, one row per slice: SLICE and SUMS, each name prefixed with "s_".

    The prefix keeps the names apart from the record's own fields, which an aggregate may not shadow.
    """
    sums: dict[str, object] = {
        "requests": Count("pk"),
        "errors": Count("pk", filter=Q(status=UsageRecord.Status.ERROR)),
        "cancelled": Count("pk", filter=Q(status=UsageRecord.Status.CANCELLED)),
        "fell_back": Count("pk", filter=Q(fell_back=True)),
        "unpriced": Count("pk", filter=UNPRICED),
        **{name: _zero(Sum(name)) for name in SUMS if name.endswith("_tokens")},
        "cost_units": _zero(Sum(COST_UNITS)),
        "latency_ms_sum": _zero(Sum("latency_ms")),
        "ttft_count": Count("ttft_ms"),
        "cache_hits": Count("pk", filter=Q(cache_hit=True)),
        "cache_saving_units": _zero(Sum(SAVING_UNITS)),
        **_bucket_counts("latency_ms", LATENCY_COLUMNS),
        **_bucket_counts("ttft_ms", TTFT_COLUMNS),
    }
    assert sums.keys() == set(SUMS)
    grouped: QuerySet[Any, dict[str, Any]] = (
        records.values(
            s_hour=UtcHour("created_at"),
            s_team_id=_zero(F("team_id")),
            s_user_id=_zero(F("user_id")),
            s_api_key_id=_zero(F("api_key_id")),
            s_model=F("model"),
            s_route=F("route"),
        )
        .order_by()
        .annotate(**{f"s_{name}": aggregate for name, aggregate in sums.items()})
    )
    return grouped


def raw_slices(since: dt.datetime, until: dt.datetime, records: QuerySet[Any] | None = None) -> dict[Slice, list[int]]:
    """The records created in [since, until), summed per slice."""
    if records is None:
        records = UsageRecord.objects.all()
    rows = raw_sums(records.filter(created_at__gte=since, created_at__lt=until))
    return {tuple(row[f"s_{n}"] for n in SLICE): [int(row[f"s_{n}"]) for n in SUMS] for row in rows}


def rollup_slices(
    since: dt.datetime, until: dt.datetime, rollups: QuerySet[Any] | None = None
) -> dict[Slice, list[int]]:
    """The rollups of the hours in [since, until), skipping empty rows."""
    if rollups is None:
        rollups = UsageRollup.objects.all()
    rows = rollups.filter(hour__gte=since, hour__lt=until).values_list(*SLICE, *SUMS)
    return {tuple(row[: len(SLICE)]): list(row[len(SLICE) :]) for row in rows if row[len(SLICE)]}


@dataclass(frozen=True)
class Mismatch:
    slice: Slice
    raw: list[int] | None
    rollup: list[int] | None

    def describe(self) -> str:
        hour, team, user, key, model, route = self.slice
        where = f"{hour:%Y-%m-%d %H}:00 team={team} user={user} key={key} model={model or '-'} route={route or '-'}"
        if self.raw is None:
            return f"{where}: a rollup with no records"
        if self.rollup is None:
            return f"{where}: records with no rollup"
        assert self.rollup is not None
        differ = [
            f"{n} {r} in records, {u} in rollup" for n, r, u in zip(SUMS, self.raw, self.rollup, strict=True) if r != u
        ]
        return f"{where}: " + "; ".join(differ)


def days(since: dt.datetime, until: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """[since, until) widened to whole hours, a day at a time."""
    start = hour_of(since)
    if hour_of(until) != until:
        until = hour_of(until) + dt.timedelta(hours=1)
    while start < until:
        end = min(start + STEP, until)
        yield start, end
        start = end


def rollups_span(until: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """From the first record or rollup to `until` (or past the last rollup, if later); None when there are none."""
    firsts = [
        UsageRecord.objects.aggregate(first=Min("created_at"))["first"],
        UsageRollup.objects.aggregate(first=Min("hour"))["first"],
    ]
    known = [first for first in firsts if first is not None]
    if not known:
        return None
    last = UsageRollup.objects.aggregate(last=Max("hour"))["last"]
    if last is not None and last >= until:
        until = last + dt.timedelta(hours=1)
    return min(known), until


def rollups_check(since: dt.datetime, until: dt.datetime) -> Iterator[Mismatch]:
    """Every slice of the hours from since's to until where the rollup differs from its records."""
    for start, end in days(since, until):
        raw = raw_slices(start, end)
        rolled = rollup_slices(start, end)
        for key in sorted(raw.keys() | rolled.keys()):
            if raw.get(key) != rolled.get(key):
                yield Mismatch(key, raw.get(key), rolled.get(key))


def rollups_rebuild(
    since: dt.datetime,
    until: dt.datetime,
    *,
    record_model: type[Model] = UsageRecord,
    rollup_model: type[Model] = UsageRollup,
) -> int:
    """Replace the rollups of the hours from since's to until with sums of their records; the rows written.

    Each day's sums go from the records' query straight into the rollup
    table (INSERT … SELECT), never through Python: millions of records
    rebuild in minutes. Bookings wait while a day is rebuilt: on SQLite
    every write transaction holds the database's write lock; on PostgreSQL
    the rollup table is locked before the records are read, so a booking
    that commits its record in between cannot add to a row that is about
    to be replaced.
    """
    written = 0
    for start, end in days(since, until):
        with _rebuilding(rollup_model):
            rollup_model._default_manager.filter(hour__gte=start, hour__lt=end).delete()
            sums = raw_sums(record_model._default_manager.filter(created_at__gte=start, created_at__lt=end))
            written += _insert_sums(rollup_model, sums)
    return written


@contextlib.contextmanager
def _rebuilding(model: type[Model]) -> Iterator[None]:
    """A transaction in which `model`'s table is rebuilt while bookings wait (locked on PostgreSQL)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"LOCK TABLE {connection.ops.quote_name(model._meta.db_table)} IN SHARE ROW EXCLUSIVE MODE"
                )
        yield


def _insert_sums(model: type[Model], sums: QuerySet[Any, dict[str, Any]]) -> int:
    """Write `sums` into `model`'s table in the database (INSERT … SELECT); the rows written.

    The SELECT's columns are named s_<column of the table>, in the compiler's order.
    """
    quote = connection.ops.quote_name
    compiler = sums.query.get_compiler(connection=connection)
    select, params = compiler.as_sql()
    columns = ", ".join(quote(alias.removeprefix("s_")) for _, _, alias in compiler.select)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(model._meta.db_table)} ({columns}) {select}", params)
        written: int = max(cursor.rowcount, 0)
    return written


def whole_days(since: dt.datetime, until: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """[since, until) widened to whole UTC days, a day at a time: the day rollups' grain."""
    start = hour_of(since).replace(hour=0)
    while start < until:
        yield start, start + dt.timedelta(days=1)
        start += dt.timedelta(days=1)


def day_sums(rollups: QuerySet[Any], grain: str) -> QuerySet[Any, dict[str, Any]]:
    """The hour rollups summed per UTC day, team and one grain's values: DAY_SLICE and SUMS, prefixed "s_"."""
    kept = GRAIN_COLUMNS[grain]
    emptied = {"model": Value(""), "route": Value(""), "user_id": Value(0), "api_key_id": Value(0)}
    grouped: QuerySet[Any, dict[str, Any]] = (
        rollups.values(
            s_day=TruncDay("hour", tzinfo=dt.UTC),
            s_team_id=F("team_id"),
            s_grain=Value(grain),
            **{f"s_{column}": F(column) if column in kept else empty for column, empty in emptied.items()},
        )
        .order_by()
        .annotate(**{f"s_{name}": Sum(name) for name in SUMS})
    )
    return grouped


def day_rollups_rebuild(
    since: dt.datetime,
    until: dt.datetime,
    *,
    rollup_model: type[Model] = UsageRollup,
    day_model: type[Model] = UsageDayRollup,
) -> int:
    """Replace the day rollups of the UTC days from since's to until's with sums of their hour rollups; the rows.

    Run after the hour rollups are right (check_rollups --rebuild rebuilds
    those first). Locked as rollups_rebuild locks: a booking adds to its
    hour rollup and then to its day rollups, so on PostgreSQL it waits for
    the day table's lock, and its hour rollup, not committed yet, is not
    among the sums read.
    """
    written = 0
    for start, end in whole_days(since, until):
        with _rebuilding(day_model):
            day_model._default_manager.filter(day__gte=start, day__lt=end).delete()
            hours = rollup_model._default_manager.filter(hour__gte=start, hour__lt=end)
            for grain in GRAIN_COLUMNS:
                written += _insert_sums(day_model, day_sums(hours, grain))
    return written


@dataclass(frozen=True)
class DayMismatch:
    slice: DaySlice
    expected: list[int] | None
    found: list[int] | None

    def describe(self) -> str:
        day, team, grain, model, route, user, key = self.slice
        if grain == UsageDayRollup.Grain.MODEL_ROUTE:
            where = f"{day:%Y-%m-%d} team={team} model={model or '-'} route={route or '-'}"
        else:
            where = f"{day:%Y-%m-%d} team={team} user={user} key={key}"
        if self.expected is None:
            return f"{where}: a day rollup with no hour rollups"
        if self.found is None:
            return f"{where}: hour rollups with no day rollup"
        differ = [
            f"{n} {e} in hour rollups, {f} in day rollup"
            for n, e, f in zip(SUMS, self.expected, self.found, strict=True)
            if e != f
        ]
        return f"{where}: " + "; ".join(differ)


def day_rollups_check(since: dt.datetime, until: dt.datetime) -> Iterator[DayMismatch]:
    """Every day rollup of the UTC days from since's to until's that differs from its hour rollups summed.

    With rollups_check (the hour rollups equal the records), this proves the
    day rollups equal the records too.
    """
    for start, end in whole_days(since, until):
        expected = day_slices(rollup_slices(start, end))
        rows = UsageDayRollup.objects.filter(day__gte=start, day__lt=end).values_list(*DAY_SLICE, *SUMS)
        found = {tuple(row[: len(DAY_SLICE)]): list(row[len(DAY_SLICE) :]) for row in rows if row[len(DAY_SLICE)]}
        for key in sorted(expected.keys() | found.keys()):
            if expected.get(key) != found.get(key):
                yield DayMismatch(key, expected.get(key), found.get(key))
