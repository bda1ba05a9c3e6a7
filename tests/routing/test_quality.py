"""The quality strategy: the cheapest model within a margin of the best by the caller's arena votes per category."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from billing.models import Team
from playground.models import PlaygroundRun, RunPanel
from playground.standings import standings_publish, standings_publish_all
from playground.tasks import publish_standings_task
from playground.votes import vote_cast
from routing.arena_standings import KEY, arena_standings_read, arena_standings_store
from routing.catalog import get_catalog
from routing.models import LanguageModel, Route
from routing.providers.types import ChatRequest, Message
from routing.strategies.resolution import resolve

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
CODE_PROMPT = "Write a Python function that parses ISO dates and fix the bug in this traceback"
QUICK_PROMPT = "Who wrote 1984?"


@pytest.fixture(autouse=True)
def no_standings(redis_client: redis.Redis) -> Iterator[None]:
    redis_client.delete(KEY)
    yield
    redis_client.delete(KEY)


@pytest.fixture
def route(make_model: Callable[..., LanguageModel], make_route: Callable[..., Route]) -> Route:
    """Three models, cheapest to dearest: mini, mid, pro; `pro` is the default while votes are few."""
    chain = [
        make_model("mini", price=("0.10", "0.40")),
        make_model("mid", price=("1.00", "4.00")),
        make_model("pro", price=("10.00", "40.00"), capabilities=["vision"]),
    ]
    route = make_route("smart", chain, strategy="quality", settings={"default": "sim/pro", "margin": 50})
    route.full_clean()
    return route


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=text),), **fields)


def standing(votes: int, **scores: float) -> dict[str, Any]:
    return {
        "votes": votes,
        "models": {f"sim/{m}": {"score": s, "low": s - 60, "high": s + 60} for m, s in scores.items()},
    }


def decide(request: ChatRequest, categories: dict[str, Any]) -> Any:
    return resolve(get_catalog(), "smart", request, now=NOW, standings={"categories": categories})


def test_the_cheapest_model_within_the_margin_of_the_best_comes_first(route: Route) -> None:
    resolution = decide(ask(CODE_PROMPT), {"coding": standing(12, mini=900, mid=1080, pro=1110)})

    # mid is 30 points below pro: good enough, and cheaper; mini is 210 below, tried after them.
    assert resolution.chain == ("sim/mid", "sim/pro", "sim/mini")
    routing = resolution.routing
    assert routing["strategy"] == "quality"
    assert routing["reason"] == "coding: sim/mid (1080) within 50 of the best, sim/pro (1110), and cheaper → sim/mid"
    assert routing["inputs"]["category"] == "coding" and routing["inputs"]["votes"] == 12
    assert routing["inputs"]["within_margin"] == ["sim/mid", "sim/pro"]


def test_when_the_best_is_far_ahead_it_is_chosen_however_dear(route: Route) -> None:
    resolution = decide(ask(CODE_PROMPT), {"coding": standing(30, mini=900, mid=1000, pro=1200)})

    assert resolution.chain == ("sim/pro", "sim/mid", "sim/mini")
    assert resolution.routing["reason"].startswith("coding: sim/pro is the best (1200 over 30 votes)")


def test_the_prompts_category_decides_which_votes_count(route: Route) -> None:
    categories = {
        "coding": standing(20, mini=800, pro=1200),
        "quick": standing(20, mini=1010, pro=1040),
    }

    assert decide(ask(CODE_PROMPT), categories).chain[0] == "sim/pro"
    quick = decide(ask(QUICK_PROMPT), categories)
    assert quick.chain[0] == "sim/mini"
    assert quick.routing["inputs"]["category"] == "quick"


def test_with_too_few_votes_the_default_answers_and_the_reason_says_so(route: Route) -> None:
    resolution = decide(ask(CODE_PROMPT), {"coding": standing(3, mini=1300, pro=900)})

    assert resolution.chain == ("sim/pro", "sim/mini", "sim/mid")
    assert resolution.routing["reason"] == "coding: 3 votes, too few: the default → sim/pro"
    assert decide(ask(CODE_PROMPT), {}).routing["reason"] == "coding: 0 votes, too few: the default → sim/pro"


def test_unranked_models_follow_the_ranked_ones_in_the_routes_order(route: Route) -> None:
    resolution = decide(ask(CODE_PROMPT), {"coding": standing(15, pro=1000)})

    assert resolution.chain == ("sim/pro", "sim/mini", "sim/mid")


def test_a_default_that_cannot_take_the_request_gives_way_to_the_routes_order(
    route: Route, make_model: Callable[..., LanguageModel], make_route: Callable[..., Route]
) -> None:
    route.settings = {"default": "sim/mini"}
    route.save()
    LanguageModel.objects.filter(public_id="sim/mini").update(enabled=False)

    resolution = decide(ask(CODE_PROMPT), {})

    assert resolution.chain == ("sim/mid", "sim/pro")
    assert "the default sim/mini cannot take it: the route's order" in resolution.routing["reason"]


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({}, "'default' must name the model"),
        ({"default": "sim/nope"}, "there is no model 'sim/nope'"),
        ({"default": "sim/pro", "margin": -1}, "'margin' must be a whole number, at least 0"),
        ({"default": "sim/pro", "min_votes": 0}, "'min_votes' must be a whole number, at least 1"),
        ({"default": "sim/pro", "votes": 3}, "Unknown setting 'votes'"),
    ],
)
def test_settings_it_cannot_use_are_refused_in_words(route: Route, settings: dict[str, Any], error: str) -> None:
    route.settings = settings
    with pytest.raises(ValidationError) as refused:
        route.full_clean()
    assert error in " ".join(refused.value.message_dict["settings"])


def voted(user: Any, team: Team | None, winner: str, loser: str, prompt: str) -> None:
    run = PlaygroundRun.objects.create(user=user, team=team, prompt=prompt, blind=True)
    for position, model in enumerate((winner, loser)):
        RunPanel.objects.create(
            run=run,
            position=position,
            label=f"Model {chr(65 + position)}",
            requested=model,
            model=model,
            status="ok",
            call_id=uuid.uuid4().hex,
        )
    vote_cast(run=run, user=user, outcome="best", winner_panel=run.panels.get(position=0))


def test_the_playground_publishes_each_scopes_standings_from_its_votes(route: Route) -> None:
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    red = Team.objects.create(name="Red", slug="red")
    for _ in range(4):
        voted(alice, red, "sim/mini", "sim/pro", CODE_PROMPT)
    voted(alice, red, "sim/pro", "sim/mini", QUICK_PROMPT)
    voted(bob, None, "sim/pro", "sim/mini", CODE_PROMPT)

    assert standings_publish_all() == 2

    team = async_to_sync(arena_standings_read)(f"team:{red.pk}")
    coding = team["categories"]["coding"]
    assert coding["votes"] == 4
    assert coding["models"]["sim/mini"]["score"] > coding["models"]["sim/pro"]["score"]
    assert team["categories"]["quick"]["votes"] == 1
    # Bob's teamless vote is his alone: neither in the team's standings nor anyone else's.
    own = async_to_sync(arena_standings_read)(f"user:{bob.pk}")
    assert own["categories"]["coding"]["votes"] == 1
    assert own["categories"]["coding"]["models"]["sim/pro"]["score"] > 1000
    assert async_to_sync(arena_standings_read)(f"user:{alice.pk}") == {}


def test_the_minute_task_restores_standings_that_redis_lost(route: Route, redis_client: redis.Redis) -> None:
    alice = get_user_model().objects.create_user("alice")
    voted(alice, None, "sim/mini", "sim/pro", CODE_PROMPT)
    standings_publish(team_id=None, user_id=alice.pk)
    redis_client.delete(KEY)

    publish_standings_task.apply()

    assert async_to_sync(arena_standings_read)(f"user:{alice.pk}")["categories"]["coding"]["votes"] == 1


def test_a_publication_read_earlier_never_overwrites_one_read_later(redis_client: redis.Redis) -> None:
    newer = {"at": "2026-12-05T12:00:01.000000+00:00", "categories": {"coding": {"votes": 3, "models": {}}}}
    older = {"at": "2026-12-05T12:00:00.500000+00:00", "categories": {"coding": {"votes": 2, "models": {}}}}
    try:
        assert arena_standings_store("user:1", newer) is True
        assert arena_standings_store("user:1", older) is False
        assert async_to_sync(arena_standings_read)("user:1")["categories"]["coding"]["votes"] == 3
        # A garbled field does not block the next publication.
        redis_client.hset(KEY, "user:1", b"not json")
        assert arena_standings_store("user:1", older) is True
    finally:
        redis_client.hdel(KEY, "user:1")
