"""Celery tasks of the playground: a few lines each, the work is in its services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="playground.publish_standings", ignore_result=True)
def publish_standings_task(team_id: int | None = None, user_id: int | None = None) -> None:
    """Publish one scope's arena standings (after a vote), or every scope's (each minute) when none is named."""
    from playground.standings import standings_publish, standings_publish_all

    if team_id is None and user_id is None:
        standings_publish_all()
    else:
        standings_publish(team_id=team_id, user_id=user_id)
