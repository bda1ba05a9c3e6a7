"""The cost calculator: a month's load per task type, at today's prices, beside the same load on one model.

A load is a number of requests a month with their average input and
output tokens, sent to a model or a route. A model's load costs what
billing would book for those tokens at the model's price in force now
(billing.services.price_of and tokens_cost, as a call is priced). A
route answers with different models, so its load is priced as the mix
of models that answered the team's calls through it in the last 30 days
(weighted by calls, each at the load's average tokens), and, with no
such calls, as its first model that has a price. A model with no price
leaves its load's cost unknown (None): flagged, never $0.

The last 30 days are read from the rollups, never the raw records, so
filling the calculator costs two grouped queries (day rollups for the
whole days, hour rollups for the first and last) at any number of calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Sum

from billing.dashboards.filters import Filters
from billing.dashboards.sources import card_rollups
from billing.money import COST_PLACES, from_units
from billing.periods import hour_of
from billing.services import price_of, tokens_cost
from playground.selectors import route_models

if TYPE_CHECKING:
    from billing.dashboards.access import TeamAccess
    from routing.catalog import Catalog

MONTHS_PER_YEAR = 12
HISTORY = dt.timedelta(days=30)


@dataclass(frozen=True)
class Load:
    """One task type's month: `requests` calls to `target` (a model's public id or a route's name)."""

    task: str
    target: str
    requests: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Pricing:
    """The models a target's load is priced at, each with its weight (calls), and how that was decided."""

    weights: tuple[tuple[str, int], ...]
    basis: str


@dataclass(frozen=True)
class RowCost:
    load: Load
    is_route: bool
    basis: str
    monthly: Decimal | None
    # The same load on the compared model; None when that model has no price.
    compared: Decimal | None
    # Models the load would reach that have no price, so its cost is unknown.
    unpriced: tuple[str, ...]

    @property
    def yearly(self) -> Decimal | None:
        return None if self.monthly is None else self.monthly * MONTHS_PER_YEAR

    @property
    def compared_yearly(self) -> Decimal | None:
        return None if self.compared is None else self.compared * MONTHS_PER_YEAR

    @property
    def saving(self) -> Decimal | None:
        """What the row's plan saves a month against the compared model (negative: it costs more)."""
        if self.monthly is None or self.compared is None:
            return None
        return self.compared - self.monthly


@dataclass(frozen=True)
class Estimate:
    rows: list[RowCost]
    compare: str
    compare_priced: bool

    @property
    def priced(self) -> list[RowCost]:
        """The rows whose cost is known: the totals are theirs, so that unknown costs never count as $0."""
        return [row for row in self.rows if row.monthly is not None]

    @property
    def unpriced_rows(self) -> list[RowCost]:
        return [row for row in self.rows if row.monthly is None]

    @property
    def monthly(self) -> Decimal:
        return sum((row.monthly for row in self.priced if row.monthly is not None), Decimal(0))

    @property
    def yearly(self) -> Decimal:
        return self.monthly * MONTHS_PER_YEAR

    @property
    def compared(self) -> Decimal | None:
        """The compared model's cost of the same rows as the total (the priced ones)."""
        if not self.compare_priced:
            return None
        return sum((row.compared for row in self.priced if row.compared is not None), Decimal(0))

    @property
    def compared_yearly(self) -> Decimal | None:
        compared = self.compared
        return None if compared is None else compared * MONTHS_PER_YEAR

    @property
    def saving(self) -> Decimal | None:
        compared = self.compared
        return None if compared is None else compared - self.monthly

    @property
    def saving_share(self) -> float | None:
        """The saving as a fraction of the compared model's cost."""
        compared = self.compared
        if compared is None or not compared:
            return None
        return float((compared - self.monthly) / compared)


@dataclass(frozen=True)
class Answered:
    """The team's calls of the last 30 days that `model` answered through `route` ("" for a model asked directly)."""

    route: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class RecentUsage:
    since: dt.datetime
    answered: list[Answered] = field(default_factory=list)

    def mixes(self) -> dict[str, dict[str, int]]:
        """Route name → the calls each model answered through it."""
        mixes: dict[str, dict[str, int]] = {}
        for group in self.answered:
            if group.route:
                mix = mixes.setdefault(group.route, {})
                mix[group.model] = mix.get(group.model, 0) + group.requests
        return mixes


def recent_usage(access: TeamAccess, *, now: dt.datetime) -> RecentUsage:
    """The team's calls that a model answered in the 30 days up to `now`, by route and model.

    Calls that no model answered (refused before any was tried) carry no
    tokens and are left out. Rollups are hourly: the period starts at the
    hour 30 days before `now`'s, and its whole days are read from the day
    rollups (billing/dashboards/sources.py).
    """
    since = hour_of(now) - HISTORY
    sums: dict[tuple[str, str], list[int]] = {}
    for part in card_rollups(
        access, Filters.unfiltered(since, hour_of(now) + dt.timedelta(hours=1)), grouped_by="route"
    ):
        rows = (
            part.exclude(model="")
            .values_list("route", "model")
            .order_by()
            .annotate(
                calls=Sum("requests"),
                tokens_in=Sum("input_tokens"),
                tokens_out=Sum("output_tokens"),
                cost=Sum("cost_units"),
            )
        )
        for route, model, *figures in rows:
            group = sums.setdefault((route, model), [0, 0, 0, 0])
            for index, figure in enumerate(figures):
                group[index] += int(figure or 0)
    answered = [
        Answered(
            route=route,
            model=model,
            requests=calls,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost=from_units(cost),
        )
        for (route, model), (calls, tokens_in, tokens_out, cost) in sums.items()
        if calls
    ]
    return RecentUsage(since=since, answered=answered)


@dataclass(frozen=True)
class Fill:
    """Loads built from the last 30 days: one per route, and one per model asked directly, busiest first."""

    loads: list[Load]
    since: dt.datetime
    calls: int
    # What those calls were booked at, to set beside the calculator's figures at today's prices.
    booked: Decimal
    # Calls of the groups beyond the calculator's rows.
    left_out: int
    # Routes and models called then that a row can no longer name (disabled, deleted), and their calls.
    gone: list[str]
    gone_calls: int


def loads_from(usage: RecentUsage, *, limit: int, offered: Collection[str]) -> Fill:
    """The last 30 days as a month's loads, each with its calls' average tokens (rounded to a whole token).

    No task type is stored per call, so each route is one row, and each
    model asked directly another, named after it. Only the routes and
    models in `offered` (those a row can name) become rows: a row for one
    since disabled could only be refused.
    """
    groups: dict[str, list[Answered]] = {}
    for group in usage.answered:
        groups.setdefault(group.route or group.model, []).append(group)
    loads, gone, gone_calls = [], [], 0
    for target, answered in groups.items():
        calls = sum(group.requests for group in answered)
        if target not in offered:
            gone.append(target)
            gone_calls += calls
            continue
        tokens_in = sum(group.input_tokens for group in answered)
        tokens_out = sum(group.output_tokens for group in answered)
        loads.append(Load(target, target, calls, round(tokens_in / calls), round(tokens_out / calls)))
    loads.sort(key=lambda load: (-load.requests, load.target))
    kept = loads[:limit]
    return Fill(
        loads=kept,
        since=usage.since,
        calls=sum(group.requests for group in usage.answered),
        booked=sum((group.cost for group in usage.answered), Decimal(0)),
        left_out=sum(load.requests for load in loads[limit:]),
        gone=sorted(gone),
        gone_calls=gone_calls,
    )


def _percent(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.0f}%"


def pricing_of(catalog: Catalog, target: str, *, mix: Mapping[str, int], at: dt.datetime) -> Pricing:
    """How a load on `target` is priced: a model at its own price; a route at its recent mix, or its first priced model.

    The mix counts only models still on the route's chain and usable: a
    model taken off it answers none of the route's future calls.
    """
    if target in catalog.models:
        return Pricing(((target, 1),), "its price today")
    chain = route_models(catalog, target)
    on_chain = {model.public_id for model in chain}
    history = sorted(
        ((model, calls) for model, calls in mix.items() if model in on_chain and calls > 0), key=lambda item: -item[1]
    )
    if history:
        total = sum(calls for _, calls in history)
        shares = ", ".join(f"{_percent(calls, total)} {model}" for model, calls in history)
        return Pricing(tuple(history), f"as its {total:,} calls of the last 30 days were answered: {shares}")
    priced = next((model for model in chain if price_of(model, at) is not None), None)
    if priced is not None:
        return Pricing(
            ((priced.public_id, 1),), f"no calls in the last 30 days: at its first priced model, {priced.public_id}"
        )
    first = chain[0].public_id if chain else target
    return Pricing(((first, 1),), "no model of its chain has a price")


def load_cost(
    catalog: Catalog, load: Load, weights: Iterable[tuple[str, int]], *, at: dt.datetime
) -> tuple[Decimal | None, tuple[str, ...]]:
    """A month of `load` answered by the weighted models at their prices at `at`; None, and which, if any has none."""
    weights = list(weights)
    unpriced = []
    weighted = Decimal(0)
    for public_id, weight in weights:
        model = catalog.models.get(public_id)
        price = price_of(model, at) if model is not None else None
        if price is None:
            unpriced.append(public_id)
            continue
        cost = tokens_cost(
            price, input_tokens=load.requests * load.input_tokens, output_tokens=load.requests * load.output_tokens
        )
        weighted += cost * weight
    if unpriced:
        return None, tuple(unpriced)
    total_weight = sum(weight for _, weight in weights)
    return (weighted / total_weight).quantize(COST_PLACES), ()


def calculator_estimate(
    *, catalog: Catalog, loads: list[Load], compare: str, mixes: Mapping[str, Mapping[str, int]], at: dt.datetime
) -> Estimate:
    """Each load's monthly cost through its target and on the `compare` model, at the prices in force at `at`."""
    rows = []
    compare_priced = True
    for load in loads:
        pricing = pricing_of(catalog, load.target, mix=mixes.get(load.target, {}), at=at)
        monthly, unpriced = load_cost(catalog, load, pricing.weights, at=at)
        compared, compare_unpriced = load_cost(catalog, load, [(compare, 1)], at=at)
        compare_priced = compare_priced and not compare_unpriced
        rows.append(
            RowCost(
                load=load,
                is_route=load.target not in catalog.models,
                basis=pricing.basis,
                monthly=monthly,
                compared=compared,
                unpriced=unpriced,
            )
        )
    return Estimate(rows=rows, compare=compare, compare_priced=compare_priced)
