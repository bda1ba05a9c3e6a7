"""Spend counters: what a user, a team or an API key spent in the current period, in Redis.

The spend of one subject in one UTC calendar period is a Redis integer in
units of 10^-10 USD (billing/money.py), so sums stay exact (INCRBYFLOAT
would round). Key: `sy:spend:<user|team|api_key>:<id>:<day|month>:<first
day of the period>`, expiring a day after the period ends, so that a call
started before the end and booked after it still lands in its own period.

- A counter is created only by a reader: when it is missing (never read in
  this period, Redis flushed or restarted) the reader rebuilds it from the
  usage records in the database and sets it unless another process did.
- A booked record's cost is added once its record is in the database, and
  only to counters that exist: starting a missing counter from zero would
  hide the spend booked before it, whereas the next reader rebuilds it whole.
- A record that may or may not have been counted (its worker died around
  the time it booked it) is recounted: its counters are dropped, and the
  next reader rebuilds them from the database.

Known gap, left to the periodic reconciliation of the roadmap: a record
committed while a rebuild runs (between its database read and its SET) can
be missed by that one counter until its period ends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import BigIntegerField, F, Q, Sum, Value
from django.db.models.functions import Cast, Round
from django.utils import timezone

from billing.caps.rules import CapRule, rule_of, subjects_of
from billing.models import SpendCap, UsageRecord
from billing.money import UNITS_PER_USD, from_units, to_units
from billing.periods import period_bounds
from fastpath.resp import Command
from switchyard.redis_clients import get_redis, get_resp

# Counters outlive their period by this much (see the module docstring).
COUNTER_GRACE = dt.timedelta(days=1)
PERIODS = tuple(SpendCap.Period.values)

# EVAL, not EVALSHA: Redis caches the compiled script by its hash either
# way, and EVALSHA would need a SCRIPT LOAD after every Redis restart.
_INCR_IF_PRESENT = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('INCRBY', key, ARGV[1])
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Counter:
    kind: str
    subject_id: int
    period: str
    start: dt.datetime
    end: dt.datetime
    key: str

    @property
    def expires_at(self) -> int:
        return int((self.end + COUNTER_GRACE).timestamp())


def counter_for(kind: str, subject_id: int, period: str, when: dt.datetime) -> Counter:
    start, end = period_bounds(period, when)
    key = f"sy:spend:{kind}:{subject_id}:{period}:{start.date().isoformat()}"
    return Counter(kind, subject_id, period, start, end, key)


def counters_of_rules(rules: Iterable[CapRule], now: dt.datetime) -> dict[tuple[str, int, str], Counter]:
    """The counter each rule reads (rules of one subject and period share one)."""
    counters: dict[tuple[str, int, str], Counter] = {}
    for rule in rules:
        if rule.counter_id not in counters:
            counters[rule.counter_id] = counter_for(rule.kind, rule.subject_id, rule.period, now)
    return counters


def counters_of_record(record: UsageRecord) -> list[Counter]:
    """Every counter a record's cost belongs to: each of its subjects, each period, at its time."""
    return [
        counter_for(kind, sid, period, record.created_at)
        for kind, sid in subjects_of(record.user_id, record.team_id, record.api_key_id)
        for period in PERIODS
    ]


# Summed as integers in SQL: exact on SQLite too, where decimals are stored as floats.
COST_UNITS = Cast(Round(F("cost_usd") * Value(UNITS_PER_USD)), output_field=BigIntegerField())


def units_from_db(counters: Sequence[Counter]) -> dict[str, int]:
    """Units spent per counter key, summed from the usage records, in one query."""
    sums: dict[str, Sum] = {}
    where = Q()
    for i, c in enumerate(counters):
        match = Q(**{f"{c.kind}_id": c.subject_id}, created_at__gte=c.start, created_at__lt=c.end)
        sums[f"c{i}"] = Sum(COST_UNITS, filter=match)
        where |= match
    row = UsageRecord.objects.filter(where, cost_usd__isnull=False).aggregate(**sums)
    return {c.key: int(row[f"c{i}"] or 0) for i, c in enumerate(counters)}


def counters_rebuild(counters: Sequence[Counter]) -> list[int]:
    """Set missing counters from the database; the value each counter holds afterwards, in order.

    SET NX: a counter another process rebuilt meanwhile may already hold
    increments, and wins. A counter of a period long past expires as it is
    set: its database sum stands.
    """
    units = units_from_db(counters)
    pipe = get_redis().pipeline(transaction=True)
    for c in counters:
        pipe.set(c.key, units[c.key], nx=True, exat=c.expires_at)
    for c in counters:
        pipe.get(c.key)
    values = pipe.execute()[len(counters) :]
    return [int(v) if v is not None else units[c.key] for c, v in zip(counters, values, strict=True)]


async def counters_add(records: Sequence[UsageRecord]) -> None:
    """Add the cost of newly inserted records to the counters that exist, in one round trip."""
    commands: list[Command] = []
    for record in records:
        if record.cost_usd:
            keys = [c.key for c in counters_of_record(record)]
            commands.append(("EVAL", _INCR_IF_PRESENT, len(keys), *keys, to_units(record.cost_usd)))
    if commands:
        await get_resp().pipeline(commands)


async def counters_drop(record: UsageRecord) -> None:
    """Drop the counters a record's cost belongs to: the next reader rebuilds them from the database."""
    if record.cost_usd:
        await get_resp().execute("DEL", *(c.key for c in counters_of_record(record)))


def cap_spent(cap: SpendCap, *, now: dt.datetime | None = None) -> Decimal:
    """What the subject of `cap` spent in the cap's current period (for pages; rebuilds a missing counter)."""
    rule = rule_of(cap)
    counter = counter_for(rule.kind, rule.subject_id, rule.period, now or timezone.now())
    value = get_redis().get(counter.key)
    return from_units(int(value) if value is not None else counters_rebuild([counter])[0])
