"""Each spend cap a viewer may see for a team: how much of it is used, and where the current pace ends the period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Q
from django.utils import timezone

from billing.caps.counters import cap_spent
from billing.models import SpendCap
from billing.periods import period_bounds

if TYPE_CHECKING:
    from billing.dashboards.access import TeamAccess

# A pace read from less of the period than this is too noisy to project.
MIN_ELAPSED = dt.timedelta(hours=1)


@dataclass(frozen=True)
class CapUsage:
    cap: SpendCap
    spent: Decimal
    resets_at: dt.datetime
    # The spend at the period's end if the pace so far holds; None early in the period.
    forecast: Decimal | None

    @property
    def used(self) -> float:
        return float(self.spent / self.cap.limit_usd) if self.cap.limit_usd else 1.0

    @property
    def used_percent(self) -> int:
        return min(100, int(self.used * 100))

    @property
    def soft_reached(self) -> bool:
        return self.used >= float(self.cap.soft_threshold)

    @property
    def forecast_over(self) -> bool:
        return self.forecast is not None and self.forecast > self.cap.limit_usd


def cap_usage(access: TeamAccess, *, now: dt.datetime | None = None) -> list[CapUsage]:
    """The team's caps, and those of its keys and members that the viewer may see, with their use."""
    now = now or timezone.now()
    members = access.members()
    visible = Q(team=access.team) | Q(api_key__in=access.keys()) | Q(user__in=members)
    caps = SpendCap.objects.filter(visible, enabled=True).select_related("team", "user", "api_key").order_by("pk")
    usage = []
    for cap in caps:
        spent = cap_spent(cap, now=now)
        start, end = period_bounds(cap.period, now)
        elapsed = now - start
        forecast = None
        if elapsed >= MIN_ELAPSED:
            length = Decimal((end - start).total_seconds()) / Decimal(elapsed.total_seconds())
            forecast = (spent * length).quantize(Decimal("0.0001"))
        usage.append(CapUsage(cap=cap, spent=spent, resets_at=end, forecast=forecast))
    return usage
