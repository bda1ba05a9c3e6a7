"""Counterfactual replay: what a period's calls would have cost served by another model or route.

Each call keeps its recorded tokens (input, cached input, cache writes,
output with its reasoning) and is re-priced as the chain would have
served it: by the first model of the chain that could (its capabilities
and its context and output limits), at that model's price in force at
the start of the call's UTC hour (billing.services.price_of, the
booking's own; a day's calls are priced at once at its midnight's price
when no price starts within the day). Calls that no model of the chain could serve, calls
booked with no price, calls whose needs were never recorded and calls
the serving model had no price for are counted apart, never re-priced.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from billing.dashboards.selectors import bucket_starts
from billing.money import from_units
from billing.money.selectors import (
    NEEDS_UNKNOWN,
    NO_MODEL,
    REAL_UNPRICED,
    PeriodSums,
    TokenSums,
    apart_sums,
    period_sums,
)
from billing.services import price_of, tokens_cost

if TYPE_CHECKING:
    from billing.dashboards.access import TeamAccess
    from billing.dashboards.filters import Filters
    from routing.catalog import Catalog, CatalogModel, CatalogRoute, PriceRow

# The serving model had no price at the call's hour.
NO_PRICE = -4
APART_REASONS = {
    NO_MODEL: "that {none_could} (context or output limit, tools, vision, JSON)",
    NO_PRICE: "in hours when the model that would have served them had no price",
    REAL_UNPRICED: "booked with no price, so what they cost is not known",
    NEEDS_UNKNOWN: "booked before a call's needs (tools, vision, JSON) were recorded",
}


class NotReplayable(ValueError):
    """A route that names no model to replay with."""


@dataclass(frozen=True)
class Apart:
    reason: str
    calls: int
    # What these calls were booked at (nothing for the calls booked with no price).
    real: Decimal


@dataclass(frozen=True)
class Compared:
    """Calls, what they cost, and what they would have cost replayed."""

    calls: int
    real: Decimal
    replayed: Decimal

    @property
    def difference(self) -> Decimal:
        """What the replay would have cost more (negative: less) than the calls did."""
        return self.replayed - self.real


@dataclass(frozen=True)
class DayCompared(Compared):
    day: dt.datetime


@dataclass(frozen=True)
class ModelCompared(Compared):
    model: str


@dataclass(frozen=True)
class Replay:
    under: str
    chain: tuple[str, ...]
    total: Compared
    apart: list[Apart]
    days: list[DayCompared]
    # By the chain's model that would have served the calls, the most calls first.
    served_by: list[ModelCompared]
    # A strategy other than "fixed": its calls replayed as its chain's first capable model (README).
    strategy: str = ""


def chain_of(catalog: Catalog, route: CatalogRoute) -> list[CatalogModel]:
    """The models a route's chain offers today, in order; the disabled ones are left out, as a call would."""
    chain = [catalog.models[name] for name in route.chain if name in catalog.models and catalog.models[name].usable]
    if not chain:
        raise NotReplayable(f"Route `{route.name}` has no enabled model in its chain to replay its calls with.")
    return chain


@dataclass
class _Tally:
    calls: int = 0
    real_units: int = 0
    replayed: Decimal = Decimal(0)

    def add(self, sums: TokenSums, cost: Decimal) -> None:
        self.calls += sums.calls
        self.real_units += sums.cost_units
        self.replayed += cost

    def compared(self) -> tuple[int, Decimal, Decimal]:
        return self.calls, from_units(self.real_units), self.replayed


def replay(
    access: TeamAccess,
    filters: Filters,
    chain: Sequence[CatalogModel],
    *,
    under: str,
    everything: PeriodSums,
) -> Replay:
    """The calls of `filters` re-priced as `chain` would have served them, beside what they cost.

    `everything`: the filters' period_sums.
    """
    apart = apart_sums(access.summed_records().filter(filters.record_q()), chain)
    # Every call chain[0] could not take is among `apart`; the rest of each slot, it serves.
    groups: dict[tuple[dt.datetime, int], TokenSums] = {(slot, 0): sums for slot, sums in everything.slots.items()}
    for (hour, goes_to), sums in apart.items():
        slot = everything.slot_of(hour)
        # A record with no rollup (one inserted around the booking; check_rollups finds it) leaves its slot short.
        groups[(slot, 0)] = groups.get((slot, 0), TokenSums()) - sums
        groups[(slot, goes_to)] = groups.get((slot, goes_to), TokenSums()) + sums
    # Summed per day, serving model and price before pricing: a cost per price, not per slot and model.
    priced: dict[tuple[dt.datetime, int, PriceRow], TokenSums] = {}
    set_apart = {reason: TokenSums() for reason in APART_REASONS}
    for (slot, goes_to), sums in groups.items():
        if sums.calls <= 0:
            continue
        price = price_of(chain[goes_to], slot) if goes_to >= 0 else None
        if price is None:
            reason = goes_to if goes_to < 0 else NO_PRICE
            set_apart[reason] += sums
            continue
        key = (slot.replace(hour=0), goes_to, price)
        priced[key] = priced.get(key, TokenSums()) + sums
    none_could = (
        f"{chain[0].public_id} could not have served" if len(chain) == 1 else "no model of the chain could have served"
    )
    total, days = _Tally(), {start: _Tally() for start in bucket_starts(filters.since, filters.until, "day")}
    served_by: dict[str, _Tally] = {}
    for (day, goes_to, price), sums in priced.items():
        cost = tokens_cost(
            price,
            input_tokens=sums.input_tokens,
            output_tokens=sums.output_tokens,
            cached_input_tokens=sums.cached_input_tokens,
            cache_write_tokens=sums.cache_write_tokens,
        )
        for tally in (total, days[day], served_by.setdefault(chain[goes_to].public_id, _Tally())):
            tally.add(sums, cost)
    return Replay(
        under=under,
        chain=tuple(model.public_id for model in chain),
        total=Compared(*total.compared()),
        apart=[
            Apart(APART_REASONS[reason].format(none_could=none_could), sums.calls, from_units(sums.cost_units))
            for reason, sums in set_apart.items()
            if sums.calls
        ],
        days=[DayCompared(*tally.compared(), day=day) for day, tally in days.items()],
        served_by=sorted(
            (ModelCompared(*tally.compared(), model=model) for model, tally in served_by.items()),
            key=lambda row: (-row.calls, row.model),
        ),
    )


def replay_under(
    access: TeamAccess,
    filters: Filters,
    catalog: Catalog,
    under: str,
    *,
    everything: PeriodSums | None = None,
) -> Replay:
    """The period replayed under `under`: "route:<name>" (its chain) or "model:<public id>" (that model alone)."""
    if everything is None:
        everything = period_sums(access, filters, catalog)
    kind, _, name = under.partition(":")
    if kind == "route":
        route = catalog.routes[name]
        result = replay(access, filters, chain_of(catalog, route), under=f"route {name}", everything=everything)
        strategy = "" if route.strategy == "fixed" else route.strategy
        return dataclasses.replace(result, strategy=strategy)
    return replay(access, filters, [catalog.models[name]], under=f"model {name}", everything=everything)
