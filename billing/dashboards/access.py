"""Who sees what of a team's usage.

A member sees the team's totals and their own calls; owners and admins of
the team also see every member's spend and calls; staff see every team.
Anyone else gets a 404 for any of the team's pages, charts, exports and
records, as if the team did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from django.contrib.auth import get_user_model
from django.http import Http404
from django.urls import reverse

from billing.models import ApiKey, Team, TeamMembership, UsageDayRollup, UsageRecord, UsageRollup

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet

LEADS = (TeamMembership.Role.OWNER, TeamMembership.Role.ADMIN)


class UsageScope(Protocol):
    """Whose usage a page reads: a team's as its viewer may see it (TeamAccess), or one's own (PersonalAccess)."""

    @property
    def viewer(self) -> User: ...

    @property
    def sees_members(self) -> bool: ...

    def records(self) -> QuerySet[UsageRecord]: ...

    def rollups(self) -> QuerySet[UsageRollup]: ...

    def day_rollups(self) -> QuerySet[UsageDayRollup] | None: ...

    def keys(self) -> QuerySet[ApiKey]: ...

    def members(self) -> QuerySet[Any]: ...


@dataclass(frozen=True)
class TeamAccess:
    team: Team
    viewer: User
    # The viewer's role in the team; "" for staff who are not members.
    role: str
    sees_members: bool

    def records(self) -> QuerySet[UsageRecord]:
        """The team's records the viewer may read one by one: all of them, or the viewer's own."""
        records = UsageRecord.objects.filter(team=self.team)
        return records if self.sees_members else records.filter(user=self.viewer)

    def rollups(self) -> QuerySet[UsageRollup]:
        """The team's rollups: totals every member may see (breakdowns by member: overview.MEMBER_CHARTS)."""
        return UsageRollup.objects.filter(team_id=self.team.pk)

    def summed_records(self) -> QuerySet[UsageRecord]:
        """The records behind rollups(): every call of the team, for figures summed over them, never listed one by one.

        The savings page counts a period's calls by what each needed of its
        model (billing/money/), which the rollups do not keep; its figures
        are totals like the overview's, so every member reads the team's.
        """
        return UsageRecord.objects.filter(team=self.team)

    def day_rollups(self) -> QuerySet[UsageDayRollup]:
        """The team's day rollups: the same figures, summed per day (billing/dashboards/sources.py)."""
        return UsageDayRollup.objects.filter(team_id=self.team.pk)

    def keys(self) -> QuerySet[ApiKey]:
        """The team's API keys the viewer may filter by."""
        keys = ApiKey.objects.filter(team=self.team)
        return keys if self.sees_members else keys.filter(user=self.viewer)

    def members(self) -> QuerySet[Any]:
        """The users the viewer may filter by: every member, or the viewer alone."""
        users = get_user_model().objects.filter(team_memberships__team=self.team)
        return users if self.sees_members else users.filter(pk=self.viewer.pk)


@dataclass(frozen=True)
class PersonalAccess:
    """The viewer's own usage, in every team and in none: their calls, keys and spend."""

    viewer: User
    sees_members: bool = False

    def records(self) -> QuerySet[UsageRecord]:
        return UsageRecord.objects.filter(user=self.viewer)

    def rollups(self) -> QuerySet[UsageRollup]:
        return UsageRollup.objects.filter(user_id=self.viewer.pk)

    def day_rollups(self) -> None:
        # Day rollups are a team's: one's own usage across teams has none.
        return None

    def keys(self) -> QuerySet[ApiKey]:
        return ApiKey.objects.filter(user=self.viewer)

    def members(self) -> QuerySet[Any]:
        return get_user_model().objects.filter(pk=self.viewer.pk)


def team_access(viewer: User, slug: str) -> TeamAccess:
    """The viewer's access to the team `slug`; a 404 when they have none or it does not exist."""
    team = Team.objects.filter(slug=slug).first()
    if team is None:
        raise Http404("No such team.")
    membership = TeamMembership.objects.filter(team=team, user=viewer).first()
    if membership is not None:
        sees = membership.role in LEADS or viewer.is_staff
        return TeamAccess(team=team, viewer=viewer, role=membership.role, sees_members=sees)
    if viewer.is_staff:
        return TeamAccess(team=team, viewer=viewer, role="", sees_members=True)
    raise Http404("No such team.")


def record_page(viewer: User, request_id: str) -> str:
    """The page of the call `request_id` that the viewer may read; Http404 when there is none."""
    record = UsageRecord.objects.filter(request_id=request_id).select_related("team").first()
    if record is None:
        raise Http404("No such call.")
    if record.team is not None:
        try:
            access = team_access(viewer, record.team.slug)
        except Http404:
            access = None
        if access is not None and access.records().filter(pk=record.pk).exists():
            return reverse("billing-team-record", args=[record.team.slug, request_id])
    # One's own call that no team page shows one: booked to no team, or to a team one has left.
    if record.user_id is not None and record.user_id == viewer.pk:
        return reverse("me-record", args=[request_id])
    raise Http404("No such call.")


def teams_of(viewer: User) -> QuerySet[Team]:
    """The teams whose pages the viewer may open."""
    if viewer.is_staff:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=viewer)
