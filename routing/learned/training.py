"""Training a learned route's model from what the database holds, and keeping it as the route's next version.

Graded prompts come from three sources, each telling whether the route's
weak and strong models answered a prompt well:

- the route's uploaded graded sets (routing.models.GradedSet), read as
  routing/learned/graded.py reads a CSV;
- the blind arena votes of the team the route names (`votes_team`), on runs
  whose columns were answered by the two models: the weak one best or a
  tie, both did; the strong one best, only it did; all bad, neither did.
  Only that team's votes: never another team's, nor a teamless user's;
- learning cascades' outcomes (routing.models.CascadeOutcome) whose first
  tier was the weak model and whose tiers include the strong one: the weak
  answer failed its check or passed, and the strong one (when reached)
  was sent or failed too.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from routing.learned.evaluation import sweep
from routing.learned.graded import Graded, GradedDataError, graded_rows
from routing.learned.router import TrainingError, router_train
from routing.models import CascadeOutcome, Route, RouterModel, RouterTrainingFailure

logger = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.2
HOLDOUT_MIN_PROMPTS = 50
SEED = 17


def _from_graded_sets(route: Route) -> list[Graded]:
    rows: list[Graded] = []
    for graded_set in route.graded_sets.all():
        rows += graded_rows(
            graded_set.csv_text,
            weak=graded_set.weak_column,
            strong=graded_set.strong_column,
            group=f"set:{graded_set.pk}",
            source=graded_set.name,
        )
    return rows


def _from_votes(team_slug: str, weak: str, strong: str) -> list[Graded]:
    from playground.models import Vote

    if not team_slug:
        return []
    rows = []
    votes = Vote.objects.filter(team__slug=team_slug, run__blind=True).select_related("run", "winner")
    for vote in votes.prefetch_related("run__panels"):
        answered = {panel.model for panel in vote.run.panels.all()}
        if not {weak, strong} <= answered:
            continue
        if vote.outcome == Vote.Outcome.ALL_BAD:
            weak_ok = strong_ok = False
        elif vote.outcome == Vote.Outcome.TIE or (vote.winner is not None and vote.winner.model == weak):
            weak_ok = strong_ok = True
        elif vote.winner is not None and vote.winner.model == strong:
            weak_ok, strong_ok = False, True
        else:
            continue
        rows.append(Graded(vote.run.prompt, weak_ok, strong_ok, "votes"))
    return rows


def _from_cascades(weak: str, strong: str) -> list[Graded]:
    rows = []
    for outcome in CascadeOutcome.objects.only("tiers", "prompt", "escalated_from", "answered_by").iterator():
        tiers = list(outcome.tiers)
        if not tiers or tiers[0] != weak or strong not in tiers:
            continue
        weak_ok = weak not in outcome.escalated_from
        strong_ok = outcome.answered_by == strong or (weak_ok and strong not in outcome.escalated_from)
        rows.append(Graded(outcome.prompt, weak_ok, strong_ok, "cascades"))
    return rows


def training_rows(route: Route) -> tuple[list[Graded], dict[str, int]]:
    """Every graded prompt the route trains on, and how many each source gave."""
    settings = route.settings
    weak, strong = settings["weak"], settings["strong"]
    sets = _from_graded_sets(route)
    votes = _from_votes(settings.get("votes_team", ""), weak, strong)
    cascades = _from_cascades(weak, strong)
    return [*sets, *votes, *cascades], {"graded_sets": len(sets), "votes": len(votes), "cascades": len(cascades)}


def _holdout_metrics(rows: list[Graded], share: float) -> dict[str, Any]:
    """APGR of a model trained on 80% of the prompts, on the other 20% (too few prompts: none)."""
    if len(rows) < HOLDOUT_MIN_PROMPTS:
        return {}
    shuffled = list(rows)
    random.Random(SEED).shuffle(shuffled)
    cut = round(len(shuffled) * (1 - HOLDOUT_SHARE))
    train, test = shuffled[:cut], shuffled[cut:]
    try:
        router = router_train(train, target_share=share)
    except TrainingError:
        return {}
    curve = sweep(test, [router.score(r.prompt) for r in test])
    return {"holdout_prompts": len(test), "holdout_apgr": round(curve.apgr, 4)}


def router_model_train(*, route: Route) -> RouterModel:
    """The route's model trained on its graded prompts, kept as its next version; TrainingError says why not."""
    if route.strategy != "learned":
        raise TrainingError(f"Route {route.name} does not use the learned strategy.")
    rows, sources = training_rows(route)
    share = route.settings.get("strong_share", 0.3)
    router = router_train(rows, target_share=share)
    metrics = {
        "prompts": len(rows),
        "threshold": router.threshold,
        "strong_share_target": share,
        "strong_share_train": round(sum(router.wants_strong(router.score(r.prompt)) for r in rows) / len(rows), 4),
        **_holdout_metrics(rows, share),
    }
    with transaction.atomic():
        # Locking the route serialises two trainings of it: each gets its own version.
        Route.objects.select_for_update().get(pk=route.pk)
        newest = RouterModel.objects.filter(route=route).aggregate(newest=Max("version"))["newest"] or 0
        return RouterModel.objects.create(
            route=route,
            version=newest + 1,
            trained_at=timezone.now(),
            sources=sources,
            metrics=metrics,
            weights=router.to_bytes(),
        )


def router_model_train_or_record(*, route_id: int) -> RouterModel | None:
    """router_model_train, for the worker: a failure is logged and kept (time, reason) for the route's admin page.

    Nothing else changes on a failure: the route's newest trained version, if
    any, keeps routing its calls.
    """
    try:
        route = Route.objects.get(pk=route_id)
    except Route.DoesNotExist:
        logger.warning("route %s: no such route, so no router model was trained", route_id)
        return None
    try:
        return router_model_train(route=route)
    except (TrainingError, GradedDataError) as exc:
        logger.warning("route %s: its router model was not trained: %s", route.name, exc)
        reason = str(exc)
    except Exception as exc:
        # A bug or a resource limit, not the data: the admin sees that much, the log has the trace.
        logger.exception("route %s: training its router model failed", route.name)
        reason = f"Unexpected error ({type(exc).__name__}: {exc}); the worker's log has the details."
    RouterTrainingFailure.objects.create(route=route, failed_at=timezone.now(), reason=reason)
    return None
