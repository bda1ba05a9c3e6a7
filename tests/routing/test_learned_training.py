"""What a learned route trains on: its graded sets, its team's votes only, and cascades between its two models."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.models import Team
from playground.models import PlaygroundRun, RunPanel, Vote
from routing.catalog import bump_version, get_catalog
from routing.learned.router import TrainingError
from routing.learned.training import router_model_train, router_model_train_or_record, training_rows
from routing.models import (
    CascadeOutcome,
    GradedSet,
    LanguageModel,
    Provider,
    Route,
    RouterModel,
    RouterTrainingFailure,
)
from tests.graded_csv import STRONG, WEAK, graded_csv

pytestmark = pytest.mark.django_db

MINI, PRO = "sim/mini", "sim/pro"


@pytest.fixture
def route(db: Any) -> Route:
    sim = Provider.objects.create(name="sim", kind="simulated")
    for name in ("mini", "pro"):
        LanguageModel.objects.create(
            public_id=f"sim/{name}", provider=sim, upstream_name=name, context_window=8000, max_output_tokens=1000
        )
    route = Route(name="smart", strategy="learned", settings={"weak": MINI, "strong": PRO, "votes_team": "acme"})
    route.full_clean()
    route.save()
    return route


def _vote(team: Team | None, prompt: str, winner: str | None, outcome: str = "best") -> None:
    user = get_user_model().objects.create_user(f"voter{PlaygroundRun.objects.count()}")
    run = PlaygroundRun.objects.create(user=user, team=team, prompt=prompt, blind=True)
    panels = {
        model: RunPanel.objects.create(
            run=run, position=i, label=f"Model {i}", requested=model, model=model, call_id=f"{run.pk}-{i}"
        )
        for i, model in enumerate((MINI, PRO))
    }
    Vote.objects.create(run=run, user=user, team=team, outcome=outcome, winner=panels[winner] if winner else None)


def test_it_trains_on_its_teams_votes_and_never_another_teams(route: Route) -> None:
    acme = Team.objects.create(name="Acme", slug="acme")
    other = Team.objects.create(name="Other", slug="other")
    _vote(acme, "prove the theorem", PRO)
    _vote(acme, "capital of France", MINI)
    _vote(acme, "a riddle", None, outcome="all_bad")
    _vote(other, "someone else's secret prompt", PRO)
    _vote(None, "a teamless user's prompt", PRO)

    rows, sources = training_rows(route)

    assert sources == {"graded_sets": 0, "votes": 3, "cascades": 0}
    assert {(r.prompt, r.weak_ok, r.strong_ok) for r in rows} == {
        ("prove the theorem", False, True),
        ("capital of France", True, True),
        ("a riddle", False, False),
    }


def test_a_cascade_that_escalated_from_the_weak_model_says_the_strong_one_was_needed(route: Route) -> None:
    for prompt, escalated, answered in (("hard", [MINI], PRO), ("easy", [], MINI)):
        CascadeOutcome.objects.create(
            created_at=timezone.now(),
            route="cascade",
            tiers=[MINI, PRO],
            prompt=prompt,
            escalated_from=escalated,
            answered_by=answered,
        )
    CascadeOutcome.objects.create(
        created_at=timezone.now(), route="x", tiers=[PRO, MINI], prompt="other order", answered_by=PRO
    )

    rows, sources = training_rows(route)

    assert sources["cascades"] == 2
    assert {(r.prompt, r.weak_ok, r.strong_ok) for r in rows} == {("hard", False, True), ("easy", True, True)}


def test_each_training_is_the_next_version_with_its_sources_and_held_out_figures(route: Route) -> None:
    GradedSet.objects.create(
        route=route, name="g", weak_column=WEAK, strong_column=STRONG, csv_text=graded_csv(200, seed=1), prompts=200
    )

    first = router_model_train(route=route)
    second = router_model_train(route=route)

    assert (first.version, second.version) == (1, 2)
    assert second.sources == {"graded_sets": 200, "votes": 0, "cascades": 0}
    assert second.metrics["holdout_prompts"] == 40 and second.metrics["holdout_apgr"] > 0.5
    assert RouterModel.objects.count() == 2


def test_a_route_with_nothing_to_learn_from_says_so(route: Route) -> None:
    with pytest.raises(TrainingError, match="Too few graded prompts"):
        router_model_train(route=route)


def test_a_version_that_cannot_be_loaded_leaves_the_one_before_it_routing(route: Route) -> None:
    GradedSet.objects.create(
        route=route, name="g", weak_column=WEAK, strong_column=STRONG, csv_text=graded_csv(100, seed=1), prompts=100
    )
    router_model_train(route=route)
    RouterModel.objects.create(route=route, version=2, trained_at=timezone.now(), weights=b"\x05\x00\x00\x00[1, 2")
    bump_version()

    assert get_catalog().learned["smart"].version == 1


def test_a_failed_training_is_kept_with_its_reason_and_trains_nothing(route: Route) -> None:
    assert router_model_train_or_record(route_id=route.pk) is None

    failure = RouterTrainingFailure.objects.get(route=route)
    assert failure.reason == "Too few graded prompts to train on: 0 (at least 10)."
    assert timezone.now() - failure.failed_at < dt.timedelta(minutes=1)
    assert not RouterModel.objects.exists()


def test_a_version_trained_after_the_newest_was_deleted_routes_even_where_it_reuses_its_key(route: Route) -> None:
    # SQLite gives the deleted newest row's primary key to the next row: the process must not keep the old router.
    GradedSet.objects.create(
        route=route, name="g", weak_column=WEAK, strong_column=STRONG, csv_text=graded_csv(100, seed=1), prompts=100
    )
    first = router_model_train(route=route)
    before = get_catalog().learned["smart"].router
    first.delete()
    route.settings = {**route.settings, "strong_share": 0.9}
    route.save()

    again = router_model_train(route=route)

    loaded = get_catalog().learned["smart"]
    assert loaded.version == again.version == 1
    assert loaded.router is not before
    assert loaded.router.threshold != before.threshold
