"""Whether a call may start: every cap on its user, team and API key against the spend of its current period.

One Redis round trip on the hot path: an MGET of the caps' version token and,
for a subject with caps, its counters. The database is read only when the
token moved, a subject's rules are not cached or too old, or a counter is
missing (billing/caps/rules.py, counters.py).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from asgiref.sync import sync_to_async
from django.utils import timezone

from billing.caps.counters import Counter, counters_of_rules, counters_rebuild
from billing.caps.rules import VERSION_KEY, CapRule, Subject, rules_cached, rules_load, subjects_of, version_reset
from billing.money import format_usd, from_units
from billing.periods import moment_text, period_adjective
from fastpath.single_flight import SingleFlight
from switchyard.redis_clients import get_resp

# Checks that need the same rules loaded, or the same counters rebuilt, at once share one load.
_rule_loads: SingleFlight[tuple[str, tuple[Subject, ...]], list[CapRule]] = SingleFlight()
_rebuilds: SingleFlight[tuple[Counter, ...], list[int]] = SingleFlight()


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
            f"{self.cap.subject_label}'s {period_adjective(self.cap.period)} cap of "
            f"{format_usd(self.limit, rounded=True)} is used up ({format_usd(self.spent, rounded=True)} spent); "
            f"it resets on {moment_text(self.resets_at)}."
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
            f"{self.cap.subject_label}'s {period_adjective(self.cap.period)} cap is {self.percent_used}% used "
            f"({format_usd(self.spent, rounded=True)} of {format_usd(self.limit, rounded=True)}), "
            f"resetting {moment_text(self.resets_at)}."
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
        rebuilt = await _rebuilds.run(tuple(missing), lambda: sync_to_async(counters_rebuild)(missing))
        units.update(zip([c.key for c in missing], rebuilt, strict=True))
    return _verdict(rules, counters, units)


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
