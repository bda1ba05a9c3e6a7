"""What the savings and replay pages read: a period's tokens per pricing slot, and the calls that need a look.

Re-pricing is linear in tokens, so the calls that any model could serve
are re-priced from the rollups' token sums per slot: a UTC day (the day
rollups, 30 rows for a month, whatever the number of calls), or an hour
on a day when a price changed. Only the calls that the first model of a
chain could not serve, too long for its context, needing a capability it
lacks, booked with no price or with needs never recorded, are read from
the records: counted in SQL, per hour and the chain's model that would
serve them instead. When that model is at least as large as a plain call
(UsageRecord.plain), only the calls that are not plain are read, through
a partial index: a small part of the period's calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import Case, Count, F, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Coalesce

from billing.caps.counters import COST_UNITS
from billing.dashboards.sources import card_rollups
from billing.models import PLAIN_CONTEXT, PLAIN_OUTPUT, UNPRICED, UsageDayRollup
from billing.periods import UtcHour
from routing.strategies.capabilities import NEEDED_TAGS

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from billing.dashboards.access import TeamAccess
    from billing.dashboards.filters import Filters
    from billing.models import UsageRecord
    from routing.catalog import Catalog, CatalogModel

# Where a call goes in a replay when no model of the chain serves it; 0 and up: the chain's model at that index.
NO_MODEL = -1
# Booked with no price: what it really cost is not known, so it is compared with nothing.
REAL_UNPRICED = -2
# Booked before the records kept what a call needed (tools, vision, JSON): whether a model could serve it is unknown.
NEEDS_UNKNOWN = -3


@dataclass(frozen=True)
class TokenSums:
    """Calls and what they used and cost: tokens as the booking prices them, the real cost in 10^-10 USD."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost_units: int = 0

    def __add__(self, other: TokenSums) -> TokenSums:
        return TokenSums(*[a + b for a, b in zip(self.values(), other.values(), strict=True)])

    def __sub__(self, other: TokenSums) -> TokenSums:
        return TokenSums(*[a - b for a, b in zip(self.values(), other.values(), strict=True)])

    def values(self) -> tuple[int, ...]:
        return (
            self.calls,
            self.input_tokens,
            self.output_tokens,
            self.cached_input_tokens,
            self.cache_write_tokens,
            self.cost_units,
        )


TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens")
SUMMED = ("requests", *TOKEN_FIELDS, "cost_units")


@dataclass(frozen=True)
class PeriodSums:
    """A period's calls summed per pricing slot: a whole UTC day, or an hour of a day read hour by hour."""

    slots: dict[dt.datetime, TokenSums]
    # The slots that are whole days.
    days: frozenset[dt.datetime]

    def slot_of(self, hour: dt.datetime) -> dt.datetime:
        """The slot a call of `hour` is summed in."""
        midnight = hour.replace(hour=0)
        return midnight if midnight in self.days else hour


def price_change_days(catalog: Catalog) -> frozenset[dt.datetime]:
    """The UTC days (midnights) in which a model's price starts after midnight: their hours are priced apart."""
    days = set()
    for model in catalog.models.values():
        for row in model.prices:
            start = row.valid_from.astimezone(dt.UTC)
            midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
            if start != midnight:
                days.add(midnight)
    return frozenset(days)


def period_sums(access: TeamAccess, filters: Filters, catalog: Catalog) -> PeriodSums:
    """Every call of the filters, summed per pricing slot.

    Whichever model answered, a replay prices a slot's calls at one
    model's price in force at the slot's start. A whole day is one slot,
    read from the day rollups, unless some price starts within it: every
    hour of such a day, and of the period's partial first and last days,
    is a slot of its own, read from the hour rollups.
    """
    slots: dict[dt.datetime, TokenSums] = {}
    days: set[dt.datetime] = set()
    for part in card_rollups(access, filters, hourly_days=price_change_days(catalog)):
        column = "day" if part.model is UsageDayRollup else "hour"
        # Tuples, not dicts: each row's dict would cost more than its sums.
        rows = (
            part.values_list(column)
            .order_by()
            .annotate(**{f"s_{name}": Coalesce(Sum(name), Value(0)) for name in SUMMED})
        )
        for start, *sums in rows:
            slot = start.astimezone(dt.UTC)
            slots[slot] = slots.get(slot, TokenSums()) + TokenSums(*sums)
            if column == "day":
                days.add(slot)
    return PeriodSums(slots=slots, days=frozenset(days))


def answering_models(access: TeamAccess, filters: Filters) -> list[str]:
    """The models that answered any call of the filters, by name."""
    answered: set[str] = set()
    for part in card_rollups(access, filters, grouped_by="model"):
        answered.update(part.exclude(model="").values_list("model", flat=True).order_by().distinct())
    return sorted(answered)


def fits(model: CatalogModel) -> Q:
    """The calls `model` could have served: their needs known and among its capabilities, their tokens in its limits.

    Needs are matched as words of the record's comma-separated tags: no tag
    of NEEDED_TAGS is a part of another.
    """
    match = Q(
        needs__isnull=False,
        total_tokens__lte=model.context_window,
        output_tokens__lte=model.max_output_tokens,
    )
    for tag in sorted(NEEDED_TAGS - model.capabilities):
        match &= ~Q(needs__contains=tag)
    return match


def apart_sums(
    records: QuerySet[UsageRecord], chain: Sequence[CatalogModel]
) -> dict[tuple[dt.datetime, int], TokenSums]:
    """The calls of `records` that `chain[0]` would not take, summed per hour and where they go.

    Where a call goes: the index of the first model of the chain that could
    serve it, NO_MODEL when none could, REAL_UNPRICED or NEEDS_UNKNOWN.
    Every other call of `records` is one `chain[0]` serves.
    """
    first = chain[0]
    if first.context_window >= PLAIN_CONTEXT and first.max_output_tokens >= PLAIN_OUTPUT:
        # A plain call is one such a model serves: only the others are read (a partial index holds them).
        records = records.filter(plain=False)
    goes_to = Case(
        When(UNPRICED, then=Value(REAL_UNPRICED)),
        When(needs__isnull=True, then=Value(NEEDS_UNKNOWN)),
        *(When(fits(model), then=Value(index)) for index, model in enumerate(chain)),
        default=Value(NO_MODEL),
        output_field=IntegerField(),
    )
    rows = (
        records.annotate(total_tokens=F("input_tokens") + F("output_tokens"))
        .filter(UNPRICED | ~fits(first))
        .values_list(UtcHour("created_at"), goes_to)
        .order_by()
        .annotate(
            s_calls=Count("*"),
            **{f"s_{name}": Coalesce(Sum(name), Value(0)) for name in TOKEN_FIELDS},
            s_cost=Coalesce(Sum(COST_UNITS), Value(0)),
        )
    )
    return {(hour.astimezone(dt.UTC), where): TokenSums(*sums) for hour, where, *sums in rows}
