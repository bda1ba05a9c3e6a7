"""Who sees what of a team's usage.

A member sees the team's totals and their own calls; owners and admins of
the team also see every member's spend and calls; staff see every team.
Anyone else gets a 404 for any of the team's pages, charts, exports and
records, as if the team did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.http import Http404
from django.urls import reverse

from billing.models import ApiKey, Team, TeamMembership, UsageRecord, UsageRollup

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet

LEADS = (TeamMembership.Role.OWNER, TeamMembership.Role.ADMIN)


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

    def keys(self) -> QuerySet[ApiKey]:
        """The team's API keys the viewer may filter by."""
        keys = ApiKey.objects.filter(team=self.team)
        return keys if self.sees_members else keys.filter(user=self.viewer)

    def members(self) -> QuerySet[Any]:
        """The users the viewer may filter by: every member, or the viewer alone."""
        users = get_user_model().objects.filter(team_memberships__team=self.team)
        return users if self.sees_members else users.filter(pk=self.viewer.pk)


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
    if record is None or record.team is None:
        raise Http404("No such call.")
    access = team_access(viewer, record.team.slug)
    if not access.records().filter(pk=record.pk).exists():
        raise Http404("No such call.")
    return reverse("billing-team-record", args=[record.team.slug, request_id])


def teams_of(viewer: User) -> QuerySet[Team]:
    """The teams whose pages the viewer may open."""
    if viewer.is_staff:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=viewer)
