"""Keeping what a learning cascade's checks said: graded prompts for a learned route (routing/learned/training.py)."""

from __future__ import annotations

import logging

from routing.calls import db_lane
from routing.calls.spec import CallSpec
from routing.models import CascadeOutcome
from routing.strategies.prompt_facts import last_user_text

logger = logging.getLogger(__name__)

# The head of the prompt is kept: where the question nearly always is, and what a router reads most.
PROMPT_CHARS = 4000


def cascade_learns(spec: CallSpec) -> bool:
    """Whether the call's outcome is kept: its cascade learns, and no personal data was found in its prompt."""
    return bool(spec.checks.get("learn")) and "sensitivity" not in spec.routing


async def cascade_outcome_keep(spec: CallSpec, escalated_from: list[str], answered_by: str) -> None:
    """Keep the outcome; a failure to is logged, never the call's: it was answered and booked already."""
    try:
        await db_lane.run(
            CascadeOutcome.objects.create,
            created_at=spec.created_at,
            route=spec.route,
            tiers=list(spec.chain),
            prompt=last_user_text(spec.request)[:PROMPT_CHARS],
            escalated_from=escalated_from,
            answered_by=answered_by,
        )
    except Exception:
        logger.exception("call %s: its cascade's outcome was not kept", spec.call_id)
