"""Spend caps on the hot path: what a user, a team or an API key spent this period, and whether a call may start.

Counters. The spend of one subject in one UTC calendar period is a Redis
integer in units of 10^-10 USD, the precision of UsageRecord.cost_usd, so
sums stay exact (INCRBYFLOAT would round). Key:
`sy:spend:<user|team|api_key>:<id>:<day|month>:<first day of the period>`,
expiring a day after the period ends, so that a call started before the end
and booked after it still lands in its own period.

- A counter is created only by a reader: when it is missing (never read in
  this period, Redis flushed or restarted) the reader rebuilds it from the
  usage records in the database and sets it unless another process did.
- `spend_command` adds a record's cost, once per call, and only to
  counters that exist: starting a missing counter from zero would hide the
  spend booked before it, whereas the next reader rebuilds it whole. The
  worker sends it with the call's terminal event: for an API call a moment
  before it inserts the record, taking it back if that insert finds the call
  booked already (routing/calls/runner.py).

Known gap, left to the periodic reconciliation of the roadmap: a record
committed while a rebuild runs (between its database read and its SET), or
counted with its terminal event but inserted after a rebuild's read, can be
missed by, or counted twice in, that one counter.

Which caps apply is cached per process and per subject, and stays valid
while the token at `sy:caps:version` does: every save or delete of a
SpendCap replaces it. A check is therefore one Redis round trip: an MGET of
that token and, for a subject with caps, its counters; the database is read
only when the token moved or a counter is missing. The check reads spend
before the call; the worst-case reservation and the settle of the roadmap
take its place in the view and in spend_command, with the same keys and units.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import BigIntegerField, F, Q, Sum, Value
from django.db.models.functions import Cast, Round
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from billing.models import SpendCap, UsageRecord
from switchyard.redis_clients import get_async_redis, get_redis, get_resp

logger = logging.getLogger(__name__)

VERSION_KEY = "sy:caps:version"
UNITS_PER_USD = 10**10
CENT = Decimal("0.01")
# Counters outlive their period by this much (see the module docstring).
COUNTER_GRACE = dt.timedelta(days=1)

Subject = tuple[str, int]

_INCR_IF_PRESENT = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('INCRBY', key, ARGV[1])
  end
end
return 0
"""


def to_units(amount: Decimal) -> int:
    """USD as an integer count of 10^-10 USD; exact for any cost_usd (10 decimal places)."""
    return int(amount.scaleb(10))


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-10)


def format_usd(amount: Decimal) -> str:
    """`50` → "$50.00", `0.0001` → "$0.0001", `0.00014751` → "$0.000147": cents from $1, three digits below a cent.

    Rounds down, so a spend shown next to its limit never looks reached before it is.
    """
    if amount == 0 or abs(amount) >= 1:
        places = 2
    elif abs(amount) >= CENT:
        places = 4
    else:
        places = 2 - amount.adjusted()
    shown = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    places = max(2, -int(shown.normalize().as_tuple().exponent))
    return f"${shown:,.{places}f}"


def period_bounds(period: str, when: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The UTC calendar day or month holding `when`, as [start, end)."""
    when = when.astimezone(dt.UTC)
    if period == SpendCap.Period.DAY:
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + dt.timedelta(days=1)
    start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


@dataclass(frozen=True, slots=True)
class CapRule:
    """An enabled SpendCap as the hot path needs it, detached from the ORM."""

    id: int
    kind: str  # "user", "team" or "api_key"
    subject_id: int
    subject_label: str  # e.g. "Team acme", "User alice"
    period: str
    limit_usd: Decimal
    soft_threshold: Decimal
    # The same two thresholds in counter units, so that a check compares integers.
    limit_units: int
    soft_units: int

    @property
    def subject(self) -> Subject:
        return (self.kind, self.subject_id)

    @property
    def counter_id(self) -> tuple[str, int, str]:
        return (self.kind, self.subject_id, self.period)


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


def _reset_text(resets_at: dt.datetime) -> str:
    return f"{resets_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _period_word(period: str) -> str:
    return "daily" if period == SpendCap.Period.DAY else "monthly"


@dataclass(frozen=True, slots=True)
class CapBlock:
    """A cap that is used up: calls of its subject are refused until `resets_at`."""

    cap: CapRule
    spent: Decimal
    limit: Decimal
    resets_at: dt.datetime

    @property
    def message(self) -> str:
        return (
            f"{self.cap.subject_label}'s {_period_word(self.cap.period)} cap of {format_usd(self.limit)} "
            f"is used up ({format_usd(self.spent)} spent); it resets on {_reset_text(self.resets_at)}."
        )

    def retry_after_seconds(self, now: dt.datetime | None = None) -> int:
        """Whole seconds until the cap resets, at least 1."""
        remaining = (self.resets_at - (now or timezone.now())).total_seconds()
        return max(1, math.ceil(remaining))


@dataclass(frozen=True, slots=True)
class CapWarning:
    """A cap past its soft threshold but not used up."""

    cap: CapRule
    spent: Decimal
    limit: Decimal
    resets_at: dt.datetime

    @property
    def percent_used(self) -> int:
        # Floored: 99.9% used is not "100%", which would read as blocked.
        return int((self.spent * 100 / self.limit).to_integral_value(rounding=ROUND_FLOOR))

    @property
    def message(self) -> str:
        return (
            f"{self.cap.subject_label}'s {_period_word(self.cap.period)} cap is {self.percent_used}% used "
            f"({format_usd(self.spent)} of {format_usd(self.limit)}), resetting {_reset_text(self.resets_at)}."
        )


@dataclass(frozen=True, slots=True)
class CapCheck:
    """Every cap that applies to a call, read once: the one that blocks it, if any, and the warnings."""

    block: CapBlock | None = None
    warnings: tuple[CapWarning, ...] = ()

    @property
    def warning_header(self) -> str | None:
        """The value of `x-switchyard-cap-warning`, most used cap first; None when no cap is past its threshold.

        Printable ASCII only: a team or user name may hold characters that a
        header cannot carry (or CR/LF, which would split it); they become "?".
        """
        text = "; ".join(w.message for w in self.warnings)
        return "".join(c if " " <= c <= "~" else "?" for c in text) or None


def _verdict(
    rules: Sequence[CapRule], counters: dict[tuple[str, int, str], Counter], units: dict[str, int]
) -> CapCheck:
    blocks: list[CapBlock] = []
    warnings: list[CapWarning] = []
    for rule in rules:
        counter = counters[rule.counter_id]
        spent = units[counter.key]
        if spent >= rule.limit_units:
            blocks.append(CapBlock(rule, from_units(spent), rule.limit_usd, counter.end))
        elif spent >= rule.soft_units:
            warnings.append(CapWarning(rule, from_units(spent), rule.limit_usd, counter.end))
    # The cap that frees up last is the one that decides when calls may resume.
    block = max(blocks, key=lambda b: b.resets_at, default=None)
    warnings.sort(key=lambda w: w.spent / w.limit, reverse=True)
    return CapCheck(block=block, warnings=() if block else tuple(warnings))


# Which caps apply: a per-process cache, valid for one version token.


@dataclass(slots=True)
class _RuleCache:
    version: str | None
    by_subject: dict[Subject, tuple[CapRule, ...]] = field(default_factory=dict)

    def rules_for(self, subjects: Iterable[Subject]) -> list[CapRule] | None:
        """The rules of all `subjects`, or None if one of them is not cached."""
        found: list[CapRule] = []
        for subject in subjects:
            rules = self.by_subject.get(subject)
            if rules is None:
                return None
            found.extend(rules)
        return found


_cache = _RuleCache(version=None)
_cache_lock = threading.Lock()


def _subjects(user_id: int | None, team_id: int | None, api_key_id: int | None) -> tuple[Subject, ...]:
    pairs = (("user", user_id), ("team", team_id), ("api_key", api_key_id))
    return tuple((kind, sid) for kind, sid in pairs if sid is not None)


def _rule(cap: SpendCap) -> CapRule:
    if cap.team_id is not None:
        kind, sid, label = "team", cap.team_id, f"Team {cap.team.name}"
    elif cap.api_key_id is not None:
        key = cap.api_key
        kind, sid = "api_key", cap.api_key_id
        label = f'API key "{key.name}" ({key.prefix}...)' if key.name else f"API key {key.prefix}..."
    else:
        kind, sid, label = "user", cap.user_id, f"User {cap.user.get_username()}"
    return CapRule(
        id=cap.pk,
        kind=kind,
        subject_id=sid,
        subject_label=label,
        period=cap.period,
        limit_usd=cap.limit_usd,
        soft_threshold=cap.soft_threshold,
        limit_units=to_units(cap.limit_usd),
        soft_units=to_units(cap.limit_usd * cap.soft_threshold),
    )


def _load_rules(version: str, subjects: tuple[Subject, ...]) -> list[CapRule]:
    global _cache
    query = Q()
    for kind, sid in subjects:
        query |= Q(**{f"{kind}_id": sid})
    loaded: dict[Subject, list[CapRule]] = {subject: [] for subject in subjects}
    for cap in SpendCap.objects.filter(query, enabled=True).select_related("user", "team", "api_key").order_by("pk"):
        rule = _rule(cap)
        loaded[rule.subject].append(rule)
    with _cache_lock:
        if _cache.version != version:
            _cache = _RuleCache(version=version)
        _cache.by_subject.update({subject: tuple(rules) for subject, rules in loaded.items()})
    return [rule for subject in subjects for rule in loaded[subject]]


def _counters(rules: Iterable[CapRule], now: dt.datetime) -> dict[tuple[str, int, str], Counter]:
    """The counter each rule reads (rules of one subject and period share one)."""
    counters: dict[tuple[str, int, str], Counter] = {}
    for rule in rules:
        if rule.counter_id not in counters:
            counters[rule.counter_id] = counter_for(rule.kind, rule.subject_id, rule.period, now)
    return counters


def _fresh_version() -> str:
    return uuid.uuid4().hex


def bump_version() -> None:
    """Make every process reload which caps apply on its next check."""
    get_redis().set(VERSION_KEY, _fresh_version())


# Rebuilding a counter from the database.

# Summed as integers in SQL: exact on SQLite too, where decimals are stored as floats.
COST_UNITS = Cast(Round(F("cost_usd") * Value(UNITS_PER_USD)), output_field=BigIntegerField())


def spend_units_from_db(counters: Sequence[Counter]) -> dict[str, int]:
    """Units spent per counter key, summed from the usage records, in one query."""
    sums: dict[str, Sum] = {}
    where = Q()
    for i, c in enumerate(counters):
        match = Q(**{f"{c.kind}_id": c.subject_id}, created_at__gte=c.start, created_at__lt=c.end)
        sums[f"c{i}"] = Sum(COST_UNITS, filter=match)
        where |= match
    row = UsageRecord.objects.filter(where, cost_usd__isnull=False).aggregate(**sums)
    return {c.key: int(row[f"c{i}"] or 0) for i, c in enumerate(counters)}


def _queue_rebuild(pipe: Any, counters: Sequence[Counter], units: dict[str, int]) -> None:
    # SET NX: a counter another process rebuilt meanwhile may already hold
    # increments, and wins; the GETs read whichever value stands.
    for c in counters:
        pipe.set(c.key, units[c.key], nx=True, exat=c.expires_at)
    for c in counters:
        pipe.get(c.key)


def _standing(counters: Sequence[Counter], units: dict[str, int], results: list[Any]) -> list[int]:
    # A counter of a period long past expires as it is set: its database sum stands.
    values = results[len(counters) :]
    return [int(v) if v is not None else units[c.key] for c, v in zip(counters, values, strict=True)]


def _rebuild(counters: Sequence[Counter]) -> list[int]:
    units = spend_units_from_db(counters)
    pipe = get_redis().pipeline(transaction=True)
    _queue_rebuild(pipe, counters, units)
    return _standing(counters, units, pipe.execute())


async def _arebuild(counters: Sequence[Counter]) -> list[int]:
    units = await sync_to_async(spend_units_from_db)(counters)
    async with get_async_redis().pipeline(transaction=True) as pipe:
        _queue_rebuild(pipe, counters, units)
        results = await pipe.execute()
    return _standing(counters, units, results)


def _read(counters: Iterable[Counter], values: Sequence[bytes | None]) -> tuple[dict[str, int], list[Counter]]:
    """Counter values by key, and the counters that were missing (to rebuild)."""
    units: dict[str, int] = {}
    missing: list[Counter] = []
    for counter, value in zip(counters, values, strict=True):
        if value is None:
            missing.append(counter)
        else:
            units[counter.key] = int(value)
    return units, missing


# The checks.


def cap_check(
    *, user_id: int | None, team_id: int | None, api_key_id: int | None, now: dt.datetime | None = None
) -> CapCheck:
    """Every enabled cap on this user, team and key, against the spend of its current period."""
    subjects = _subjects(user_id, team_id, api_key_id)
    if not subjects:
        return CapCheck()
    now = now or timezone.now()
    client = get_redis()
    cached = _cache
    rules = cached.rules_for(subjects)
    counters = _counters(rules or (), now)
    # One MGET reads the version token and, if the cached rules still hold, their counters.
    raw_version, *values = client.mget([VERSION_KEY, *(c.key for c in counters.values())])
    version = raw_version.decode() if raw_version is not None else _reset_version_sync()
    if rules is None or cached.version != version:
        rules = _load_rules(version, subjects)
        counters = _counters(rules, now)
        values = client.mget([c.key for c in counters.values()]) if counters else []
    if not rules:
        return CapCheck()
    units, missing = _read(counters.values(), values)
    if missing:
        units.update(zip([c.key for c in missing], _rebuild(missing), strict=True))
    return _verdict(rules, counters, units)


async def acap_check(
    *, user_id: int | None, team_id: int | None, api_key_id: int | None, now: dt.datetime | None = None
) -> CapCheck:
    """`cap_check` for the event loop: async Redis, and the database only through sync_to_async."""
    subjects = _subjects(user_id, team_id, api_key_id)
    if not subjects:
        return CapCheck()
    now = now or timezone.now()
    client = get_resp()
    cached = _cache
    rules = cached.rules_for(subjects)
    counters = _counters(rules or (), now)
    raw_version, *values = await client.execute("MGET", VERSION_KEY, *(c.key for c in counters.values()))
    version = raw_version.decode() if raw_version is not None else await _reset_version_async()
    if rules is None or cached.version != version:
        rules = await sync_to_async(_load_rules)(version, subjects)
        counters = _counters(rules, now)
        values = await client.execute("MGET", *(c.key for c in counters.values())) if counters else []
    if not rules:
        return CapCheck()
    units, missing = _read(counters.values(), values)
    if missing:
        units.update(zip([c.key for c in missing], await _arebuild(missing), strict=True))
    return _verdict(rules, counters, units)


def _reset_version_sync() -> str:
    # The token vanished with a Redis flush; a new one makes every process
    # reload, since none can know whether caps changed meanwhile.
    client = get_redis()
    client.set(VERSION_KEY, _fresh_version(), nx=True)
    return client.get(VERSION_KEY).decode()


async def _reset_version_async() -> str:
    _, version = await get_resp().pipeline([("SET", VERSION_KEY, _fresh_version(), "NX"), ("GET", VERSION_KEY)])
    return version.decode()


def cap_block_for(*, user_id: int, team_id: int | None, api_key_id: int | None) -> CapBlock | None:
    """The cap that refuses a new call of this user (in this team, with this key), or None if it may start."""
    return cap_check(user_id=user_id, team_id=team_id, api_key_id=api_key_id).block


async def acap_block_for(*, user_id: int, team_id: int | None, api_key_id: int | None) -> CapBlock | None:
    return (await acap_check(user_id=user_id, team_id=team_id, api_key_id=api_key_id)).block


def cap_warnings_for(*, user_id: int, team_id: int | None, api_key_id: int | None) -> tuple[CapWarning, ...]:
    """Caps of this user, team and key past their soft threshold, most used first (empty when one blocks)."""
    return cap_check(user_id=user_id, team_id=team_id, api_key_id=api_key_id).warnings


def cap_spent(cap: SpendCap, *, now: dt.datetime | None = None) -> Decimal:
    """What the subject of `cap` spent in the cap's current period (for pages; rebuilds a missing counter)."""
    rule = _rule(cap)
    counter = counter_for(rule.kind, rule.subject_id, rule.period, now or timezone.now())
    value = get_redis().get(counter.key)
    return from_units(int(value) if value is not None else _rebuild([counter])[0])


# Booking.


_PERIODS = tuple(SpendCap.Period.values)


def spend_command(record: UsageRecord, *, undo: bool = False) -> tuple[str | int, ...] | None:
    """The Redis command that adds the cost of a call's record to its counters (None: nothing to add).

    `undo` takes it back off. The worker sends it with the call's terminal
    event, in the same round trip.
    """
    if not record.cost_usd:
        return None
    keys = [
        counter_for(kind, sid, period, record.created_at).key
        for kind, sid in _subjects(record.user_id, record.team_id, record.api_key_id)
        for period in _PERIODS
    ]
    # EVAL, not EVALSHA: Redis caches the compiled script by its hash either
    # way, and EVALSHA would need a SCRIPT LOAD after every Redis restart.
    units = to_units(record.cost_usd)
    return ("EVAL", _INCR_IF_PRESENT, len(keys), *keys, -units if undo else units)


# Keeping every process's cache of caps in step with the database.

_warned = False


def _bump() -> None:
    global _warned
    try:
        bump_version()
    except redis.RedisError as exc:
        if not _warned:
            _warned = True
            logger.warning("Redis unreachable (%s): other processes keep their cached spend caps", exc)


def caps_changed(**_: Any) -> None:
    # Now, for this process, and again after commit, so that no other
    # process reloads before the row is visible.
    _bump()
    transaction.on_commit(_bump)


# Connected at import: billing.services imports this module, and billing's
# AppConfig.ready imports billing.services (billing.signals → api_auth), so
# every process is connected once Django is set up.
post_save.connect(caps_changed, sender=SpendCap, dispatch_uid="billing-spendcap-save")
post_delete.connect(caps_changed, sender=SpendCap, dispatch_uid="billing-spendcap-delete")
