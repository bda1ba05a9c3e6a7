"""Whether a call may start: every cap on its user, team and API key against the spend of its current period.

One Redis round trip for a caller with no cap: an MGET of the caps' version
token (and of the counters of a subject with caps). The database is read
only when the token moved, a subject's rules are not cached or too old, or
a counter is missing (billing/caps/rules.py, counters.py). A capped caller's
call then takes a second round trip: its reservation (caps_reserve,
billing/caps/reservations.py), which alone decides whether it may start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from asgiref.sync import sync_to_async
from django.utils import timezone

from billing.caps.counters import Counter, counters_of_rules, counters_rebuild
from billing.caps.reservations import Missing, reservations_take
from billing.caps.rules import VERSION_KEY, CapRule, Subject, rules_cached, rules_load, subjects_of, version_reset
from billing.money import format_usd, from_units
from billing.periods import moment_text, period_adjective
from fastpath.single_flight import SingleFlight
from switchyard.redis_clients import get_resp

# Checks that need the same rules loaded, or the same counters rebuilt, at once share one load.
_rule_loads: SingleFlight[tuple[str, tuple[Subject, ...]], list[CapRule]] = SingleFlight()
_rebuilds: SingleFlight[tuple[Counter, ...], list[int]] = SingleFlight()

# What a call refused for the reservations of calls in progress is told to wait: they end within seconds, mostly.
HELD_RETRY_SECONDS = 2


@dataclass(frozen=True, slots=True)
class CapBlock:
    """A cap with no room for a call: used up until `resets_at`, or short of what the call may cost.

    `asked` is the reservation that did not fit (0 when the cap is used up)
    and `held` what calls in progress had reserved on it then.
    """

    cap: CapRule
    spent: Decimal
    limit: Decimal
    resets_at: dt.datetime
    asked: Decimal = Decimal(0)
    held: Decimal = Decimal(0)

    @property
    def used_up(self) -> bool:
        return self.spent >= self.limit

    @property
    def name(self) -> str:
        """The cap in words: "User alice's monthly cap of $5.00"."""
        period = period_adjective(self.cap.period)
        return f"{self.cap.subject_label}'s {period} cap of {format_usd(self.limit, rounded=True)}"

    @property
    def room(self) -> Decimal:
        """What a new call may still reserve on the cap."""
        return max(self.limit - self.spent - self.held, Decimal(0))

    @property
    def message(self) -> str:
        cap = self.name
        if self.used_up:
            return (
                f"{cap} is used up ({format_usd(self.spent, rounded=True)} spent); "
                f"it resets on {moment_text(self.resets_at)}."
            )
        held = f", after {format_usd(self.held, rounded=True)} held by calls in progress" if self.held else ""
        return (
            f"{cap} has {format_usd(self.room, rounded=True)} left{held}: less than this call may cost "
            f"({format_usd(self.asked)}, its input and every output token it may use at today's prices). "
            f"A lower max_tokens reserves less; the cap resets on {moment_text(self.resets_at)}."
        )

    @property
    def lasts_until_reset(self) -> bool:
        """True when only the cap's reset can make room; else calls in progress may free enough when they end."""
        return self.used_up or self.spent + self.asked > self.limit

    def retry_after_seconds(self, now: dt.datetime | None = None) -> int:
        """Whole seconds until the cap may have room, at least 1."""
        if not self.lasts_until_reset:
            return HELD_RETRY_SECONDS
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
            f"{self.cap.subject_label}'s {period_adjective(self.cap.period)} cap is {self.percent_used}% used "
            f"({format_usd(self.spent, rounded=True)} of {format_usd(self.limit, rounded=True)}), "
            f"resetting {moment_text(self.resets_at)}."
        )


@dataclass(frozen=True, slots=True)
class CapCheck:
    """Every cap that applies to a call, read once: the one that blocks it, if any, and the warnings.

    `rules` and `counters` are what caps_reserve reserves against; empty for a caller with no cap.
    """

    block: CapBlock | None = None
    warnings: tuple[CapWarning, ...] = ()
    rules: tuple[CapRule, ...] = ()
    counters: dict[tuple[str, int, str], Counter] = field(default_factory=dict)

    @property
    def capped(self) -> bool:
        return bool(self.rules)

    @property
    def warning_text(self) -> str | None:
        """What `x-switchyard-cap-warning` says, most used cap first; None when no cap is past its threshold."""
        return "; ".join(w.message for w in self.warnings) or None


async def cap_check(
    *, user_id: int | None, team_id: int | None, api_key_id: int | None, now: dt.datetime | None = None
) -> CapCheck:
    """Every enabled cap on this user, team and key, against the spend of its current period."""
    subjects = subjects_of(user_id, team_id, api_key_id)
    if not subjects:
        return CapCheck()
    now = now or timezone.now()
    client = get_resp()
    cached_version, rules = rules_cached(subjects)
    counters = counters_of_rules(rules or (), now)
    raw_version, *values = await client.execute("MGET", VERSION_KEY, *(c.key for c in counters.values()))
    version = raw_version.decode() if raw_version is not None else await version_reset()
    if rules is None or cached_version != version:
        rules = await _rule_loads.run((version, subjects), lambda: sync_to_async(rules_load)(version, subjects))
        counters = counters_of_rules(rules, now)
        values = await client.execute("MGET", *(c.key for c in counters.values())) if counters else []
    if not rules:
        return CapCheck()
    units: dict[str, int] = {}
    missing: list[Counter] = []
    for counter, value in zip(counters.values(), values, strict=True):
        if value is None:
            missing.append(counter)
        else:
            units[counter.key] = int(value)
    if missing:
        units.update(await _rebuilt(missing))
    return _verdict(rules, counters, units)


async def caps_reserve(check: CapCheck, calls: Sequence[tuple[str, int]]) -> CapCheck:
    """Reserve each call's worst-case cost ((call id, units)) against every cap of `check`, all or none.

    The check as it was when every call is reserved (or there is no cap);
    else a check whose block names the cap that had no room.
    """
    if not check.capped or check.block is not None:
        return check
    limits: dict[str, int] = {}
    for rule in check.rules:
        key = check.counters[rule.counter_id].key
        limits[key] = min(limits.get(key, rule.limit_units), rule.limit_units)
    counters = [(c, limits[c.key]) for c in check.counters.values()]
    for _ in range(_RESERVE_TRIES):
        outcome = await reservations_take(counters, calls)
        if outcome is None:
            return check
        if isinstance(outcome, Missing):
            await _rebuilt([outcome.counter])
            continue
        rule = min(
            (r for r in check.rules if check.counters[r.counter_id].key == outcome.counter.key),
            key=lambda r: r.limit_units,
        )
        block = CapBlock(
            rule,
            from_units(outcome.spent),
            rule.limit_usd,
            outcome.counter.end,
            asked=from_units(outcome.asked),
            held=from_units(outcome.held),
        )
        return dataclasses.replace(check, block=block, warnings=())
    raise CapsUnavailable("the spend counters kept vanishing while a call was reserved (is Redis being flushed?)")


class CapsUnavailable(Exception):
    """The caps could not be read or reserved against: the call must not start."""


# A counter can vanish between its rebuild and the reservation only if Redis is flushed again in between.
_RESERVE_TRIES = 3


async def _rebuilt(missing: list[Counter]) -> dict[str, int]:
    rebuilt = await _rebuilds.run(tuple(missing), lambda: sync_to_async(counters_rebuild)(missing))
    return dict(zip([c.key for c in missing], rebuilt, strict=True))


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
    return CapCheck(block=block, warnings=() if block else tuple(warnings), rules=tuple(rules), counters=counters)
