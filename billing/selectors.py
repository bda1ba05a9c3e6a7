"""Reads of the billing app."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from billing.models import Team, TeamMembership, UsageRecord


def team_of_user(*, user_id: int) -> Team | None:
    """The user's default team, which their playground runs are booked to: their first membership, or none."""
    membership = TeamMembership.objects.filter(user_id=user_id).select_related("team").order_by("created_at", "pk")
    first = membership.first()
    return first.team if first else None


# A route's escalation rate is read off its newest calls, at most this many, so the admin page stays quick.
ESCALATION_WINDOW_CALLS = 10_000
ESCALATION_WINDOW_DAYS = 30


@dataclass(frozen=True)
class Escalations:
    calls: int
    escalated: int

    @property
    def rate(self) -> float:
        return self.escalated / self.calls if self.calls else 0.0


def route_escalations(*, route: str) -> Escalations:
    """How many of the route's newest calls (within ESCALATION_WINDOW_DAYS) a cascade escalated."""
    since = timezone.now() - dt.timedelta(days=ESCALATION_WINDOW_DAYS)
    counts = list(
        UsageRecord.objects.filter(route=route, created_at__gte=since)
        .order_by("-created_at")
        .values_list("escalations", flat=True)[:ESCALATION_WINDOW_CALLS]
    )
    return Escalations(calls=len(counts), escalated=sum(1 for n in counts if n))
