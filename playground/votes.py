"""Blind votes: the one vote of a blind run, and when its model names may be shown."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction

from playground.models import PlaygroundRun, RunPanel, Vote
from playground.tasks import publish_standings_task
from routing.strategies.complexity import classify_prompt


class VoteError(Exception):
    """A vote the rules refuse. The message is written for the person voting."""


def panel_reveal(run: PlaygroundRun) -> bool:
    """Whether the run's model names may be shown: always for an open run, after the vote for a blind one."""
    return not run.blind or Vote.objects.filter(run=run).exists()


def vote_cast(
    *,
    run: PlaygroundRun,
    user: AbstractBaseUser | AnonymousUser,
    outcome: str,
    winner_panel: RunPanel | None = None,
) -> Vote:
    """Record the one vote of a blind run, by its owner, once every answer is in.

    The category is the run's own, or else the classifier's reading of the
    prompt; the team is the run's. Raises VoteError for anything the rules
    refuse, with nothing written.
    """
    if not run.blind:
        raise VoteError("Only blind runs take votes: the names were visible, so the vote would not be blind.")
    if run.user_id != user.pk:
        raise VoteError("Only the person who made this run can vote on it.")
    if outcome not in Vote.Outcome.values:
        raise VoteError("Choose one answer as best, a tie, or all bad.")
    panels = list(run.panels.all())
    if any(panel.status == RunPanel.Status.RUNNING for panel in panels):
        raise VoteError("Wait until every answer has finished, then vote.")
    winner = None
    if outcome == Vote.Outcome.BEST:
        if winner_panel is None:
            raise VoteError("Say which answer is best.")
        winner = next((panel for panel in panels if panel.pk == winner_panel.pk), None)
        if winner is None:
            raise VoteError("The best answer must be one of this run's answers.")
        if winner.status != RunPanel.Status.OK:
            raise VoteError(f"{winner.label} has no answer to judge: it {winner.get_status_display().lower()}.")
    if Vote.objects.filter(run=run).exists():
        raise VoteError("This run already has a vote: there is one vote per run.")
    try:
        with transaction.atomic():
            vote = Vote.objects.create(
                run=run,
                user_id=user.pk,
                team_id=run.team_id,
                outcome=outcome,
                winner=winner,
                category=run.category or classify_prompt(run.prompt),
            )
    except IntegrityError as exc:
        # Two clicks at once: the one-to-one on run lets only the first through.
        raise VoteError("This run already has a vote: there is one vote per run.") from exc
    # Ranked off the request's path: the quality strategy reads the new standings within seconds, not at the minute.
    # Robust: with the broker away the vote stands, and the minute's publication catches up.
    transaction.on_commit(
        lambda: publish_standings_task.delay(team_id=vote.team_id, user_id=None if vote.team_id else vote.user_id),
        robust=True,
    )
    return vote
