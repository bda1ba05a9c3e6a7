"""Spend counters: what a user, a team or an API key spent in the current period, in Redis.

The spend of one subject in one UTC calendar period is a Redis integer in
units of 10^-10 USD (billing/money/__init__.py), so sums stay exact (INCRBYFLOAT
would round). Key: `sy:spend:<user|team|api_key>:<id>:<day|month>:<first
day of the period>`, expiring a day after the period ends, so that a call
started before the end and booked after it still lands in its own period.

- A counter is created only by a reader: when it is missing (never read in
  this period, Redis flushed or restarted) the reader rebuilds it from the
  usage records in the database and sets it unless another process did.
- A booked call's cost is added when its terminal event goes out
  (routing/calls/booking.py), by the script that also releases its
  reservation (billing/caps/reservations.py), and only to counters that
  exist: starting a missing counter from zero would hide the spend booked
  before it, whereas the next reader rebuilds it whole.
- A record that may or may not have been counted (its worker died around
  the time it booked it) is recounted: its counters are dropped, and the
  next reader rebuilds them from the database.

A call counted while its counter was missing, whose record is committed
after a rebuild of that counter read the database, is missed by the
rebuild. The reconciliation that runs every minute (billing/caps/reconcile.py)
finds such a counter below the database's sum and corrects it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import BigIntegerField, F, Q, Sum, Value
from django.db.models.functions import Cast, Round
from django.utils import timezone

from billing.caps.reservations import settle_command
from billing.caps.rules import CapRule, rule_of, subjects_of
from billing.models import SpendCap, UsageRecord
from billing.money import UNITS_PER_USD, from_units, to_units
from billing.periods import period_bounds
from fastpath.resp import Command
from switchyard.redis_clients import get_redis, get_resp

logger = logging.getLogger(__name__)

# Counters outlive their period by this much (see the module docstring).
COUNTER_GRACE = dt.timedelta(days=1)
PERIODS = tuple(SpendCap.Period.values)


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


def counters_settle_commands(records: Sequence[UsageRecord]) -> list[Command]:
    """The scripts that count the records' costs on the counters that exist and release their reservations."""
    return [
        settle_command(record.request_id, [c.key for c in counters_of_record(record)], _units(record))
        for record in records
    ]


def _units(record: UsageRecord) -> int:
    return to_units(record.cost_usd) if record.cost_usd else 0


async def counters_settle(records: Sequence[UsageRecord]) -> None:
    """Add the cost of newly inserted records to the counters that exist, and release their calls' reservations.

    One round trip for them all.
    """
    if not records:
        return
    reserved = await get_resp().pipeline(counters_settle_commands(records))
    for record, held in zip(records, reserved, strict=True):
        units = _units(record)
        if 0 < held < units:
            # The guarantee that caps are never overshot rests on reservations covering costs.
            logger.warning(
                "call %s cost %s, more than the %s reserved", record.request_id, record.cost_usd, from_units(held)
            )


async def counters_drop(record: UsageRecord) -> None:
    """Drop the counters a record's cost belongs to (the next reader rebuilds them), and release its reservation."""
    commands: list[Command] = [settle_command(record.request_id, [], 0)]
    if record.cost_usd:
        commands.append(("DEL", *(c.key for c in counters_of_record(record))))
    await get_resp().pipeline(commands)


def cap_spent(cap: SpendCap, *, now: dt.datetime | None = None) -> Decimal:
    """What the subject of `cap` spent in the cap's current period (for pages; rebuilds a missing counter)."""
    rule = rule_of(cap)
    counter = counter_for(rule.kind, rule.subject_id, rule.period, now or timezone.now())
    value = get_redis().get(counter.key)
    return from_units(int(value) if value is not None else counters_rebuild([counter])[0])
