"""Adding newly inserted usage records to their rollups, in the transaction that inserts them.

One upsert per slice touched, which adds to the counts already there: SQLite
and PostgreSQL both take `INSERT … ON CONFLICT … DO UPDATE`, and both apply
it atomically, so workers booking into the same slice never lose a count.
Each record adds to its hour rollup and to its team's two day rollups (its
model and route's, its user and key's: UsageDayRollup).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Model

from billing.models import UsageDayRollup, UsageRecord, UsageRollup
from billing.money import to_units
from billing.periods import hour_of
from billing.rollups.buckets import LATENCY_COLUMNS, TTFT_COLUMNS, bucket_of

SLICE = ("hour", "team_id", "user_id", "api_key_id", "model", "route")
SUMS = (
    "requests",
    "errors",
    "cancelled",
    "fell_back",
    "unpriced",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_units",
    "latency_ms_sum",
    "ttft_count",
    "cache_hits",
    "cache_saving_units",
    *LATENCY_COLUMNS,
    *TTFT_COLUMNS,
)
_SUM_INDEX = {name: i for i, name in enumerate(SUMS)}

Slice = tuple[dt.datetime, int, int, int, str, str]
# A day rollup's slice: its UTC midnight, team, grain, and that grain's two values (the others empty).
DAY_SLICE = ("day", "team_id", "grain", "model", "route", "user_id", "api_key_id")
DaySlice = tuple[dt.datetime, int, str, str, str, int, int]


def slice_of(record: UsageRecord) -> Slice:
    return (
        hour_of(record.created_at),
        record.team_id or 0,
        record.user_id or 0,
        record.api_key_id or 0,
        record.model,
        record.route,
    )


def sums_of(record: UsageRecord) -> list[int]:
    """The record's contribution to each of SUMS."""
    sums = [0] * len(SUMS)
    values = {
        "requests": 1,
        "errors": int(record.status == UsageRecord.Status.ERROR),
        "cancelled": int(record.status == UsageRecord.Status.CANCELLED),
        "fell_back": int(record.fell_back),
        "unpriced": int(record.cost_usd is None and record.model != ""),
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cached_input_tokens": record.cached_input_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost_units": to_units(record.cost_usd) if record.cost_usd is not None else 0,
        "latency_ms_sum": record.latency_ms,
        "ttft_count": int(record.ttft_ms is not None),
        "cache_hits": int(record.cache_hit),
        "cache_saving_units": to_units(record.cache_saving_usd) if record.cache_saving_usd is not None else 0,
        LATENCY_COLUMNS[bucket_of(record.latency_ms)]: 1,
    }
    if record.ttft_ms is not None:
        values[TTFT_COLUMNS[bucket_of(record.ttft_ms)]] = 1
    for name, value in values.items():
        sums[_SUM_INDEX[name]] = value
    return sums


def merged(records: Iterable[UsageRecord]) -> dict[Slice, list[int]]:
    """The records' sums, one entry per slice they fall in."""
    slices: dict[Slice, list[int]] = {}
    for record in records:
        key = slice_of(record)
        sums = sums_of(record)
        if key in slices:
            slices[key] = [a + b for a, b in zip(slices[key], sums, strict=True)]
        else:
            slices[key] = sums
    return slices


def day_slices(slices: dict[Slice, list[int]]) -> dict[DaySlice, list[int]]:
    """Hour slices summed into their teams' day rollups: each counts once per model and route, once per user and key."""
    days: dict[DaySlice, list[int]] = {}
    for (hour, team, user, key, model, route), sums in slices.items():
        day = hour.astimezone(dt.UTC).replace(hour=0)
        for day_slice in (
            (day, team, UsageDayRollup.Grain.MODEL_ROUTE.value, model, route, 0, 0),
            (day, team, UsageDayRollup.Grain.USER_KEY.value, "", "", user, key),
        ):
            counted = days.get(day_slice)
            days[day_slice] = sums.copy() if counted is None else [a + b for a, b in zip(counted, sums, strict=True)]
    return days


def rollups_add(records: Sequence[UsageRecord]) -> None:
    """Add the records to their hour and day rollups; the caller's transaction makes every write one."""
    if records:
        slices = merged(records)
        rollups_upsert(slices)
        day_rollups_upsert(day_slices(slices))


@functools.cache
def _upsert_sql(vendor: str, model: type[Model], slice_columns: tuple[str, ...]) -> str:
    # Built once per database kind and table: every booking sends the same statements. SQLite's in its own
    # placeholder style ("?"), as _upsert sends it.
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = (*slice_columns, *SUMS)
    additions = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in SUMS)
    placeholder = "?" if vendor == "sqlite" else "%s"
    return (
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join([placeholder] * len(columns))}) "
        f"ON CONFLICT ({', '.join(quote(c) for c in slice_columns)}) DO UPDATE SET {additions}"
    )


def rollups_upsert(slices: dict[Slice, list[int]]) -> None:
    """Add each slice's sums to its hour rollup row, creating the row when it is new."""
    _upsert(UsageRollup, SLICE, slices)


def day_rollups_upsert(slices: dict[DaySlice, list[int]]) -> None:
    """Add each slice's sums to its day rollup row, creating the row when it is new."""
    _upsert(UsageDayRollup, DAY_SLICE, slices)


def _upsert(model: type[Model], slice_columns: tuple[str, ...], slices: dict[Any, list[int]]) -> None:
    # Rows in a fixed order: a team's day rows are shared by all of its calls of the day, and on PostgreSQL two
    # bookings that lock the same rows in opposite orders would deadlock.
    rows = [(connection.ops.adapt_datetimefield_value(key[0]), *key[1:], *sums) for key, sums in sorted(slices.items())]
    sql = _upsert_sql(connection.vendor, model, slice_columns)
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        return
    # Django's SQLite cursor rewrites a statement's "%s" into "?" on every call, with a regular expression
    # over the whole statement: for these 3 KB upserts that took several times what SQLite takes to run
    # them (bench/gateway_overhead.py). The statement is sent as built, to the sqlite3 connection beneath.
    connection.ensure_connection()
    with connection.wrap_database_errors:
        connection.connection.executemany(sql, rows)


def rollups_orphan(field: str, subject_id: int) -> None:
    """Fold the rollups of a user, key or team being deleted into "none" (0), as the deletion does to its records.

    Both the hour and the day rollups. Run in the deletion's transaction
    (pre_delete), so check_rollups finds the records and their rollups in
    step after it.
    """
    _fold(UsageRollup, SLICE, field, subject_id)
    _fold(UsageDayRollup, DAY_SLICE, field, subject_id)


def _fold(model: type[Model], slice_columns: tuple[str, ...], field: str, subject_id: int) -> None:
    rows = model._default_manager.filter(**{field: subject_id})
    position = slice_columns.index(field)
    slices: dict[Any, list[int]] = {}
    for row in rows.values_list(*slice_columns, *SUMS):
        key = list(row[: len(slice_columns)])
        key[position] = 0
        slices[tuple(key)] = list(row[len(slice_columns) :])
    rows.delete()
    if slices:
        _upsert(model, slice_columns, slices)
