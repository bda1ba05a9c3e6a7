"""Which rollups a card sums: the hour rollups, or the day rollups for the whole days of its period.

A team's day rollups (UsageDayRollup) sum its calls per UTC day, model
and route, and apart per UTC day, user and key. A card can read them when
its filters and its grouping name only model and route, or only user and
key, and, if it draws buckets of time, when they are days, weeks or
months. Then the period's whole UTC days come from the day rollups, and
the hours before the first midnight and after the last (a "last 30 days"
period starts and ends on the hour) from the hour rollups: the parts sum
to exactly what the hour rollups alone would give, from orders of
magnitude fewer rows. Otherwise (a model and a user, hour buckets, one's
own page across teams) the hour rollups alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from billing.models import UsageDayRollup

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from billing.dashboards.access import UsageScope
    from billing.dashboards.filters import Filters

# The grain of the day rollups that holds each dimension a card may filter or group by.
GRAIN_OF = {
    "model": UsageDayRollup.Grain.MODEL_ROUTE.value,
    "route": UsageDayRollup.Grain.MODEL_ROUTE.value,
    "user": UsageDayRollup.Grain.USER_KEY.value,
    "key": UsageDayRollup.Grain.USER_KEY.value,
}


def card_rollups(
    access: UsageScope,
    filters: Filters,
    *,
    grouped_by: str | None = None,
    bucketed: bool = False,
    hourly_days: Collection[dt.datetime] = (),
) -> list[QuerySet[Any]]:
    """The rollups a card sums, in parts that add up (hour rollups, day rollups), narrowed by the filters.

    `grouped_by` is the dimension the card breaks its figures down by
    (None for totals); `bucketed` says it draws them over time, in
    filters.bucket's buckets. `hourly_days` (midnights UTC) are read from
    the hour rollups even when whole: a card that needs their hours apart.
    """
    hours = access.rollups()
    days = access.day_rollups()
    dimensions = filters.dimensions() | ({grouped_by} if grouped_by else set())
    first_day = _midnight_at_or_after(filters.since)
    last_day = filters.until.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    grains = {GRAIN_OF.get(dimension) for dimension in dimensions}
    if (
        days is None
        or len(grains) > 1
        or None in grains
        or (bucketed and filters.bucket == "hour")
        or first_day >= last_day
    ):
        return [hours.filter(filters.rollup_q())]
    narrowing = filters.narrowing()
    grain = next(iter(grains), None) or UsageDayRollup.Grain.MODEL_ROUTE.value
    split = sorted(day for day in hourly_days if first_day <= day < last_day)
    parts: list[QuerySet[Any]] = [
        days.filter(Q(grain=grain, day__gte=first_day, day__lt=last_day) & narrowing).exclude(day__in=split)
    ]
    edges = [(day, day + dt.timedelta(days=1)) for day in split]
    if filters.since < first_day:
        edges.append((filters.since, first_day))
    if last_day < filters.until:
        edges.append((last_day, filters.until))
    if edges:
        spans = Q()
        for start, end in edges:
            spans |= Q(hour__gte=start, hour__lt=end)
        parts.append(hours.filter(spans & narrowing))
    return parts


def _midnight_at_or_after(moment: dt.datetime) -> dt.datetime:
    midnight = moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight if midnight == moment else midnight + dt.timedelta(days=1)
