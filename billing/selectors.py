"""Reads of the billing app."""

from __future__ import annotations

from billing.models import Team, TeamMembership


def team_of_user(*, user_id: int) -> Team | None:
    """The user's default team, which their playground runs are booked to: their first membership, or none."""
    membership = TeamMembership.objects.filter(user_id=user_id).select_related("team").order_by("created_at", "pk")
    first = membership.first()
    return first.team if first else None
