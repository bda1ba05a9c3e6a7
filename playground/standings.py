"""The arena's standings per prompt category, published for the quality routing strategy.

The playground owns the votes and ranks them (leaderboard.py); routing reads
the published standings (routing/arena_standings.py) without a database
query on the call's path. Each scope is published again after each of its
votes and, for every scope, by a Celery beat task each minute, which also
restores them after Redis lost them.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.utils import timezone

from playground.leaderboard import leaderboard_for, votes_for
from playground.models import Vote
from routing.arena_standings import arena_standings_store, standings_scope


def standings_measure(*, team_id: int | None, user_id: int | None = None) -> dict[str, Any]:
    """The standings of a team's votes, or (team_id None) of the user's own teamless votes, by category.

    "at" is when the votes were read, before they are, so that a later reading always carries a later time.
    """
    read_at = timezone.now()
    counts = (
        votes_for(team_id=team_id, user_id=user_id, category=None)
        .values("category")
        .order_by()
        .annotate(votes=Count("pk"))
    )
    categories: dict[str, Any] = {}
    for row in counts:
        rankings = leaderboard_for(team_id=team_id, user_id=user_id, category=row["category"])
        categories[row["category"]] = {
            "votes": row["votes"],
            "models": {r.model: {"score": r.score, "low": r.ci_low, "high": r.ci_high} for r in rankings},
        }
    return {"at": read_at.isoformat(timespec="microseconds"), "categories": categories}


def standings_publish(*, team_id: int | None, user_id: int | None = None) -> None:
    scope = standings_scope(team_id=team_id, user_id=user_id)
    arena_standings_store(scope, standings_measure(team_id=team_id, user_id=user_id))


def standings_publish_all() -> int:
    """Publish every scope that has votes; returns how many."""
    teams = Vote.objects.filter(team__isnull=False).values_list("team_id", flat=True).distinct().order_by()
    users = Vote.objects.filter(team__isnull=True).values_list("user_id", flat=True).distinct().order_by()
    published = 0
    for team_id in teams:
        standings_publish(team_id=team_id)
        published += 1
    for user_id in users:
        standings_publish(team_id=None, user_id=user_id)
        published += 1
    return published
