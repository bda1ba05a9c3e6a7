"""Models measured lately (routing/model_health.py) and the strategy that orders a route by them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from routing.catalog import get_catalog
from routing.model_health import KEY, model_health_measure
from routing.models import LanguageModel, Route
from routing.providers.types import ChatRequest, Message
from routing.strategies.resolution import resolve
from routing.tasks import measure_model_health_task
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 5, 12, 30, tzinfo=dt.UTC)
HELLO = ChatRequest(messages=(Message(role="user", content="Hello"),))


@pytest.fixture(autouse=True)
def no_measurements(redis_client: redis.Redis) -> Iterator[None]:
    redis_client.delete(KEY)
    yield
    redis_client.delete(KEY)


def attempt(model: str, outcome: str) -> dict[str, Any]:
    return {"model": model, "outcome": outcome}


def test_it_measures_latency_from_the_rollups_and_failures_from_the_attempts() -> None:
    at = NOW - dt.timedelta(minutes=10)
    book(
        *(
            usage_record(at=at, model="sim/a", latency_ms=900, ttft_ms=400, attempts=[attempt("sim/a", "ok")])
            for _ in range(3)
        ),
        *(
            usage_record(
                at=at,
                model="sim/b",
                latency_ms=300,
                ttft_ms=90,
                attempts=[attempt("sim/a", "rate_limited"), attempt("sim/b", "ok")],
            )
            for _ in range(2)
        ),
        # A refused request is the caller's fault, a skip or an open circuit no attempt: none counts against the model.
        usage_record(
            at=at,
            model="",
            status="error",
            attempts=[attempt("sim/a", "bad_request"), attempt("sim/c", "skipped"), attempt("sim/d", "circuit_open")],
        ),
        # Five hours ago: in the 6- and 24-hour windows only.
        usage_record(
            at=NOW - dt.timedelta(hours=5),
            model="sim/b",
            latency_ms=5000,
            ttft_ms=4000,
            attempts=[attempt("sim/b", "ok")],
        ),
    )

    measured = model_health_measure(NOW)

    hour = measured["windows"]["1"]
    assert hour["sim/a"]["answered"] == 3 and hour["sim/a"]["tried"] == 6 and hour["sim/a"]["failed"] == 2
    assert hour["sim/b"]["answered"] == 2 and (hour["sim/b"]["tried"], hour["sim/b"]["failed"]) == (2, 0)
    assert hour["sim/b"]["ttft_p50"] < 100 < hour["sim/a"]["ttft_p50"] <= 500
    assert "sim/c" not in hour and "sim/d" not in hour
    assert measured["windows"]["6"]["sim/b"]["answered"] == 3
    assert measured["at"] == "2026-12-05T12:30:00+00:00"


@pytest.fixture
def route(make_model: Callable[..., LanguageModel], make_route: Callable[..., Route]) -> Route:
    route = make_route("quick", [make_model("a"), make_model("b"), make_model("c")])
    route.strategy = "fastest"
    return route


def configured(route: Route, **settings: Any) -> None:
    route.settings = settings
    route.full_clean()
    route.save()


HEALTH = {
    "at": "2026-12-05T12:30:00+00:00",
    "windows": {
        "1": {
            "sim/a": {"answered": 50, "latency_p50": 900.0, "ttft_p50": 400.0, "tried": 60, "failed": 1},
            "sim/b": {"answered": 40, "latency_p50": 1200.0, "ttft_p50": 150.0, "tried": 80, "failed": 30},
            "sim/c": {"answered": 3, "latency_p50": 100.0, "ttft_p50": 20.0, "tried": 3, "failed": 0},
        }
    },
}


@pytest.mark.parametrize(
    ("by", "chain", "reason"),
    [
        ("ttft", ("sim/b", "sim/a", "sim/c"), "fastest first token (p50 150 ms) over 1 h → sim/b"),
        ("latency", ("sim/a", "sim/b", "sim/c"), "fastest answer (p50 900 ms) over 1 h → sim/a"),
        ("reliability", ("sim/a", "sim/b", "sim/c"), "most reliable (1.7% failed) over 1 h → sim/a"),
    ],
)
def test_measured_models_come_first_best_first_and_the_barely_measured_after(
    route: Route, by: str, chain: tuple[str, ...], reason: str
) -> None:
    configured(route, by=by, min_calls=20)

    resolution = resolve(get_catalog(), "quick", HELLO, health=HEALTH)

    assert resolution.chain == chain
    assert resolution.routing["reason"] == reason
    assert resolution.routing["inputs"]["scores"]["sim/c"] is None


def test_with_no_measurements_the_route_keeps_its_order_and_says_so(route: Route) -> None:
    configured(route)
    resolution = resolve(get_catalog(), "quick", HELLO, health={})
    assert resolution.chain == ("sim/a", "sim/b", "sim/c")
    assert resolution.routing["reason"] == "no measurements yet: the route's order"
    few = resolve(get_catalog(), "quick", HELLO, health=HEALTH | {"windows": {"1": {}}})
    assert few.routing["reason"] == "too few calls measured in 1 h: the route's order"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"by": "cost"}, "'by' must be one of ttft, latency, reliability"),
        ({"hours": 2}, "'hours' must be one of 1, 6, 24"),
        ({"min_calls": 0}, "'min_calls' must be a whole number"),
    ],
)
def test_settings_it_cannot_use_are_refused(route: Route, settings: dict[str, Any], error: str) -> None:
    route.settings = settings
    with pytest.raises(Exception, match=error):
        route.full_clean()


def test_the_beat_task_measures_and_shares_through_redis(redis_client: redis.Redis) -> None:
    book(usage_record(at=dt.datetime.now(dt.UTC), model="sim/a", attempts=[attempt("sim/a", "ok")]))
    assert settings.CELERY_BEAT_SCHEDULE["measure-model-health"]["task"] == measure_model_health_task.name

    measure_model_health_task.apply()

    stored = json.loads(redis_client.get(KEY) or b"{}")
    assert stored["windows"]["1"]["sim/a"]["answered"] == 1
