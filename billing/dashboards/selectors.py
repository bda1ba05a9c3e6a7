"""The dashboards' figures, read from the rollups (never the raw records, which may be millions).

Every function takes the rollups a viewer may read, already narrowed by
the page's filters, as parts that add up (hour rollups, and day rollups
for whole days: billing/dashboards/sources.py). Each part is summed in
SQL, the parts' few rows in Python; percentiles come from the summed
latency histograms (billing/rollups/buckets.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.db.models import QuerySet, Sum

from billing.models import COVERED_SUMS, ApiKey, Team, UsageDayRollup, UsageRecord
from billing.money import from_units
from billing.rollups.buckets import LATENCY_COLUMNS, TTFT_COLUMNS, percentile

# Stacked series beyond this many are summed into one "other", so a chart stays readable.
TOP_SERIES = 8
OTHER = "other"
NONE_LABEL = {
    "model": "(none answered)",
    "route": "(direct)",
    "user": "(no user)",
    "key": "(no key)",
    "team": "(no team)",
}
DIMENSION_FIELDS = {"model": "model", "route": "route", "user": "user_id", "key": "api_key_id", "team": "team_id"}


@dataclass(frozen=True)
class Totals:
    requests: int
    errors: int
    fell_back: int
    unpriced: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cache_hits: int
    cost: Decimal
    # What the response cache's hits would have cost from their models.
    cache_saving: Decimal

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def fallback_rate(self) -> float | None:
        return self.fell_back / self.requests if self.requests else None

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.requests if self.requests else None


Parts = Sequence[QuerySet[Any]]


def totals(parts: Parts) -> Totals:
    values = dict.fromkeys(COVERED_SUMS, 0)
    for part in parts:
        sums = part.aggregate(**{name: Sum(name) for name in COVERED_SUMS})
        for name in COVERED_SUMS:
            values[name] += int(sums[name] or 0)
    cost = from_units(values.pop("cost_units"))
    saving = from_units(values.pop("cache_saving_units"))
    return Totals(**values, cost=cost, cache_saving=saving)


@dataclass(frozen=True)
class Series:
    """Values per bucket for each stacked label, the biggest first; buckets without calls are zeros."""

    buckets: list[dt.datetime]
    values: dict[str, list[float]]


def bucket_of(hour: dt.datetime, bucket: str) -> dt.datetime:
    """The start of the bucket (UTC hour, day, Monday's week, month) holding a rollup's hour."""
    if bucket == "hour":
        return hour
    start = hour.replace(hour=0)
    if bucket == "week":
        return start - dt.timedelta(days=start.weekday())
    if bucket == "month":
        return start.replace(day=1)
    return start


def bucket_starts(since: dt.datetime, until: dt.datetime, bucket: str) -> list[dt.datetime]:
    """Every bucket's start from since's bucket to until, so that a quiet bucket shows as zero."""
    start = since
    if bucket in ("day", "week", "month"):
        start = start.replace(hour=0)
    if bucket == "week":
        start -= dt.timedelta(days=start.weekday())
    if bucket == "month":
        start = start.replace(day=1)
    starts = []
    while start < until:
        starts.append(start)
        if bucket == "month":
            start = (
                start.replace(year=start.year + 1, month=1)
                if start.month == 12
                else start.replace(month=start.month + 1)
            )
        else:
            start += {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1), "week": dt.timedelta(days=7)}[bucket]
    return starts


def over_time(
    parts: Parts,
    *,
    since: dt.datetime,
    until: dt.datetime,
    bucket: str,
    stack: str,
    metric: str,
) -> Series:
    """Spend (USD) or tokens per bucket, stacked by model, user, key or route."""
    field = DIMENSION_FIELDS[stack]
    amount = Sum("cost_units") if metric == "spend" else Sum("input_tokens") + Sum("output_tokens")
    starts = bucket_starts(since, until, bucket)
    index = {start: i for i, start in enumerate(starts)}
    sums: dict[Any, list[int]] = {}
    for part in parts:
        # Summed per hour (or day) in SQL and into buckets here: truncating every row's hour in SQL is a function
        # call per rollup (in Python, on SQLite), where the rows per hour and series are far fewer.
        moment = "day" if part.model is UsageDayRollup else "hour"
        for row in part.values(moment, field).order_by().annotate(amount=amount):
            counted = sums.setdefault(row[field], [0] * len(starts))
            i = index.get(bucket_of(row[moment].astimezone(dt.UTC), bucket))
            if i is not None:
                counted[i] += row["amount"] or 0
    by_label = {
        key: [float(from_units(units)) for units in counted] if metric == "spend" else [float(n) for n in counted]
        for key, counted in sums.items()
    }
    labels = labels_of(stack, by_label)
    ranked = sorted(by_label.items(), key=lambda item: -sum(item[1]))
    values: dict[str, list[float]] = {}
    for n, (key, line) in enumerate(ranked):
        if n < TOP_SERIES or len(ranked) == TOP_SERIES + 1:
            values[labels[key]] = line
        else:
            other = values.setdefault(OTHER, [0.0] * len(starts))
            values[OTHER] = [a + b for a, b in zip(other, line, strict=True)]
    return Series(buckets=starts, values=values)


@dataclass(frozen=True)
class Share:
    key: Any
    label: str
    requests: int
    tokens: int
    cost: Decimal
    unpriced: int


def spend_by(parts: Parts, dimension: str, *, limit: int = 12) -> list[Share]:
    """Spend, requests and tokens per model, user, key or route, the most expensive first (ties by value)."""
    field = DIMENSION_FIELDS[dimension]
    # Per value: cost units, requests, tokens, unpriced requests. Every value is read (a team has at most
    # hundreds), so that parts add up before the dearest are chosen.
    sums: dict[Any, list[int]] = {}
    for part in parts:
        rows = (
            part.values(field)
            .order_by()
            .annotate(
                cost=Sum("cost_units"),
                n=Sum("requests"),
                tokens=Sum("input_tokens") + Sum("output_tokens"),
                unpriced_n=Sum("unpriced"),
            )
        )
        for row in rows:
            added = [int(row[name] or 0) for name in ("cost", "n", "tokens", "unpriced_n")]
            counted = sums.get(row[field])
            sums[row[field]] = added if counted is None else [a + b for a, b in zip(counted, added, strict=True)]
    ranked = sorted(sums.items(), key=lambda item: (-item[1][0], -item[1][1], str(item[0])))[:limit]
    labels = labels_of(dimension, [key for key, _ in ranked])
    return [
        Share(
            key=key,
            label=labels[key],
            requests=n,
            tokens=tokens,
            cost=from_units(cost),
            unpriced=unpriced,
        )
        for key, (cost, n, tokens, unpriced) in ranked
    ]


@dataclass(frozen=True)
class ModelHealth:
    model: str
    requests: int
    errors: int
    fell_back: int
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fell_back / self.requests if self.requests else 0.0


def model_health(parts: Parts) -> list[ModelHealth]:
    """Requests, error and fallback rates, latency and time to first token (p50, p95) per model."""
    columns = ("requests", "errors", "fell_back", *LATENCY_COLUMNS, *TTFT_COLUMNS)
    # Named apart from the columns they sum: an aggregate may not shadow a field.
    sums = {f"s_{column}": Sum(column) for column in columns}
    per_model: dict[str, dict[str, int]] = {}
    for part in parts:
        for row in cast("Iterable[dict[str, Any]]", part.values("model").order_by().annotate(**sums)):
            counted = per_model.setdefault(row["model"], dict.fromkeys(columns, 0))
            for column in columns:
                counted[column] += int(row[f"s_{column}"] or 0)
    health = []
    for model, row in per_model.items():
        latency = [row[column] for column in LATENCY_COLUMNS]
        ttft = [row[column] for column in TTFT_COLUMNS]
        health.append(
            ModelHealth(
                model=model or NONE_LABEL["model"],
                requests=row["requests"],
                errors=row["errors"],
                fell_back=row["fell_back"],
                latency_p50=percentile(latency, 0.5),
                latency_p95=percentile(latency, 0.95),
                ttft_p50=percentile(ttft, 0.5),
                ttft_p95=percentile(ttft, 0.95),
            )
        )
    return sorted(health, key=lambda row: (-row.requests, row.model))


def most_expensive(records: QuerySet[UsageRecord], limit: int) -> list[UsageRecord]:
    """The calls that cost the most, dearest first; calls that cost nothing (failed, unpriced) are not among them."""
    return list(records.filter(cost_usd__gt=0).select_related("user").order_by("-cost_usd", "-created_at")[:limit])


def labels_of(dimension: str, keys: Iterable[Any]) -> dict[Any, str]:
    """What each value of a dimension is called on a page: a user's name, a key's name and prefix."""
    keys = list(keys)
    ids = [key for key in keys if key]
    if dimension == "user":
        names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
        return {key: names.get(key, f"user #{key}") if key else NONE_LABEL["user"] for key in keys}
    if dimension == "key":
        found = {key.pk: f"{key.name or 'unnamed'} ({key.prefix}…)" for key in ApiKey.objects.filter(pk__in=ids)}
        return {key: found.get(key, f"key #{key}") if key else NONE_LABEL["key"] for key in keys}
    if dimension == "team":
        teams = dict(Team.objects.filter(pk__in=ids).values_list("pk", "name"))
        return {key: teams.get(key, f"team #{key}") if key else NONE_LABEL["team"] for key in keys}
    return {key: key or NONE_LABEL[dimension] for key in keys}
