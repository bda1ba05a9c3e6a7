"""Which spend caps apply to a call: the enabled SpendCaps of its user, team and API key, cached per process.

A process caches the rules of each subject it has seen. The cache stays
valid while the token at VERSION_KEY does (every save or delete of a
SpendCap replaces it, billing/signals.py), and at most RULES_MAX_AGE_SECONDS:
a cap saved while Redis was unreachable could not replace the token, and
still takes effect in every process within that time.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis
from django.db import transaction
from django.db.models import Q

from billing.models import SpendCap
from billing.money import to_units
from switchyard.redis_clients import get_redis, get_resp

logger = logging.getLogger(__name__)

VERSION_KEY = "sy:caps:version"
RULES_MAX_AGE_SECONDS = 5.0

# (kind, id): ("user", 3), ("team", 1), ("api_key", 7).
Subject = tuple[str, int]


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


def subjects_of(user_id: int | None, team_id: int | None, api_key_id: int | None) -> tuple[Subject, ...]:
    pairs = (("user", user_id), ("team", team_id), ("api_key", api_key_id))
    return tuple((kind, sid) for kind, sid in pairs if sid is not None)


@dataclass(slots=True)
class _RuleCache:
    version: str | None
    by_subject: dict[Subject, tuple[float, tuple[CapRule, ...]]] = field(default_factory=dict)

    def rules_for(self, subjects: Iterable[Subject]) -> list[CapRule] | None:
        """The rules of all `subjects`, or None if one of them is not cached, or cached too long ago."""
        found: list[CapRule] = []
        oldest = time.monotonic() - RULES_MAX_AGE_SECONDS
        for subject in subjects:
            cached = self.by_subject.get(subject)
            if cached is None or cached[0] < oldest:
                return None
            found.extend(cached[1])
        return found


_cache = _RuleCache(version=None)
_cache_lock = threading.Lock()


def rules_cached(subjects: Iterable[Subject]) -> tuple[str | None, list[CapRule] | None]:
    """The cache's version token, and the cached rules of `subjects` (None when they must be loaded)."""
    cached = _cache
    return cached.version, cached.rules_for(subjects)


def rule_of(cap: SpendCap) -> CapRule:
    if cap.team_id is not None:
        assert cap.team is not None
        kind, sid, label = "team", cap.team_id, f"Team {cap.team.name}"
    elif cap.api_key_id is not None:
        key = cap.api_key
        assert key is not None
        kind, sid = "api_key", cap.api_key_id
        label = f'API key "{key.name}" ({key.prefix}...)' if key.name else f"API key {key.prefix}..."
    else:
        # A cap applies to exactly one subject (a check constraint): here, a user.
        assert cap.user_id is not None and cap.user is not None
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


def rules_load(version: str, subjects: tuple[Subject, ...]) -> list[CapRule]:
    """The enabled caps of `subjects` from the database, cached under `version`."""
    global _cache
    query = Q()
    for kind, sid in subjects:
        query |= Q(**{f"{kind}_id": sid})
    loaded: dict[Subject, list[CapRule]] = {subject: [] for subject in subjects}
    for cap in SpendCap.objects.filter(query, enabled=True).select_related("user", "team", "api_key").order_by("pk"):
        rule = rule_of(cap)
        loaded[rule.subject].append(rule)
    now = time.monotonic()
    with _cache_lock:
        if _cache.version != version:
            _cache = _RuleCache(version=version)
        _cache.by_subject.update({subject: (now, tuple(rules)) for subject, rules in loaded.items()})
    return [rule for subject in subjects for rule in loaded[subject]]


async def version_reset() -> str:
    """A new token when the old one vanished with a Redis flush: no process can know whether caps changed meanwhile."""
    _, version = await get_resp().pipeline([("SET", VERSION_KEY, uuid.uuid4().hex, "NX"), ("GET", VERSION_KEY)])
    return str(version.decode())


def version_bump() -> None:
    """Make every process reload which caps apply on its next check."""
    get_redis().set(VERSION_KEY, uuid.uuid4().hex)


_warned = False


def _bump() -> None:
    global _warned
    try:
        version_bump()
    except redis.RedisError as exc:
        if not _warned:
            _warned = True
            logger.warning(
                "Redis unreachable (%s): other processes reload their spend caps within %g s",
                exc,
                RULES_MAX_AGE_SECONDS,
            )


def caps_changed(**_: Any) -> None:
    """A SpendCap was saved or deleted. Connected in billing/signals.py."""
    # Now, for this process, and again after commit, so that no other
    # process reloads before the row is visible.
    _bump()
    transaction.on_commit(_bump)
