"""How each model has been doing lately, measured from the usage ledger, shared by every process through Redis.

A Celery beat task (routing/tasks.py, every minute) measures, for windows
of the last 1, 6 and 24 hours:

- each answering model's latency and time to first token (p50), from the
  hourly rollups' histograms (billing/rollups/): a window is whole hours,
  the current one included;
- each model's attempts and failures, from the attempts of the newest
  records in the window (at most MAX_RECORDS, so the task's cost is bounded
  whatever the traffic): a failure is an outcome that is the provider's
  fault (FAILURES), not the caller's (a refused request, a stop).

It writes them to one Redis key as JSON. A web process reads that key for a
call only when some route's strategy needs it (routing/strategies/fastest.py),
and keeps what it parsed while the key's bytes stay the same. A flushed
Redis means no measurements until the next minute: the strategy says so
and keeps the route's order.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from django.db.models import Sum
from django.utils import timezone

from billing.models import UsageRecord, UsageRollup
from billing.periods import hour_of
from billing.rollups.buckets import LATENCY_COLUMNS, TTFT_COLUMNS, percentile
from routing.providers.errors import ErrorKind
from switchyard.redis_clients import get_redis, get_resp

KEY = "sy:model-health"
WINDOWS_HOURS = (1, 6, 24)
MAX_RECORDS = 50_000
FAILURES = frozenset({"rate_limited", "overloaded", "timeout", "unavailable", "auth"})
# Attempts that never reached the model: left out of the chain, or passed over while its circuit was open.
NOT_TRIED = frozenset({"skipped", ErrorKind.CIRCUIT_OPEN.value})

_parsed: tuple[bytes, dict[str, Any]] | None = None


def model_health_measure(now: dt.datetime | None = None) -> dict[str, Any]:
    """The measurements, as stored: {"at": ISO time, "windows": {"1": {model: figures}, "6": …, "24": …}}."""
    now = now or timezone.now()
    windows: dict[str, dict[str, dict[str, Any]]] = {}
    for hours in WINDOWS_HOURS:
        since = hour_of(now) - dt.timedelta(hours=hours - 1)
        figures: dict[str, dict[str, Any]] = {}
        for model, row in _latencies(since):
            figures[model] = row
        for model, (tried, failed) in _attempts(now - dt.timedelta(hours=hours)).items():
            figures.setdefault(model, {"answered": 0, "latency_p50": None, "ttft_p50": None})
            figures[model] |= {"tried": tried, "failed": failed}
        windows[str(hours)] = figures
    return {"at": now.astimezone(dt.UTC).isoformat(), "windows": windows}


def model_health_store(measured: dict[str, Any]) -> None:
    get_redis().set(KEY, json.dumps(measured, separators=(",", ":")))


async def model_health_read() -> dict[str, Any]:
    """The latest measurements, {} when there are none yet (or Redis lost them)."""
    global _parsed
    raw = await get_resp().execute("GET", KEY)
    if not raw:
        return {}
    if _parsed is None or _parsed[0] != raw:
        _parsed = (raw, json.loads(raw))
    return _parsed[1]


def _latencies(since: dt.datetime) -> Iterable[tuple[str, dict[str, Any]]]:
    sums = {"answered": Sum("requests"), **{c: Sum(c) for c in (*LATENCY_COLUMNS, *TTFT_COLUMNS)}}
    rows = UsageRollup.objects.filter(hour__gte=since).exclude(model="").values("model").order_by().annotate(**sums)
    for row in cast("Iterable[dict[str, Any]]", rows):
        yield (
            row["model"],
            {
                "answered": row["answered"] or 0,
                "latency_p50": percentile([row[c] or 0 for c in LATENCY_COLUMNS], 0.5),
                "ttft_p50": percentile([row[c] or 0 for c in TTFT_COLUMNS], 0.5),
                "tried": 0,
                "failed": 0,
            },
        )


def _attempts(since: dt.datetime) -> dict[str, tuple[int, int]]:
    tried: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    records = UsageRecord.objects.filter(created_at__gte=since).order_by("-created_at")
    for attempts in records.values_list("attempts", flat=True)[:MAX_RECORDS]:
        for attempt in attempts or ():
            model, outcome = attempt.get("model"), attempt.get("outcome")
            if not model or outcome in NOT_TRIED:
                continue
            tried[model] += 1
            if outcome in FAILURES:
                failed[model] += 1
    return {model: (tried[model], failed[model]) for model in tried}
