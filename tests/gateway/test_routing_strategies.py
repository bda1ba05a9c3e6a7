"""Routing strategies through /v1 with the OpenAI SDK: hints in `metadata` or headers, the reason header, the trace."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from billing.models import UsageRecord
from playground.models import PlaygroundRun, RunPanel
from playground.votes import vote_cast
from routing.arena_standings import KEY as STANDINGS_KEY
from routing.model_health import KEY, model_health_store
from routing.models import Route, RouteStep
from tests.billing.test_reservations import wait_for
from tests.fakes.openai import FakeOpenAI
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture
def budget_route(registry: dict[str, Any]) -> Route:
    route: Route = registry["routes"]["auto"]
    route.strategy = "budget"
    route.settings = {"output_tokens": 1000}
    route.full_clean()
    route.save()
    return route


def test_a_price_ceiling_in_metadata_picks_the_model_that_fits_and_the_answer_says_why(
    client: openai.OpenAI, budget_route: Route
) -> None:
    # 1,000 output tokens: gpt-4o-mini about $0.0006, gpt-4o about $0.01.
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, metadata={"max_price": "0.005"}
    )
    assert raw.headers["x-switchyard-model"] == "up/gpt-4o-mini"
    assert raw.headers["x-switchyard-route-reason"] == "auto: cheapest under $0.005 -> up/gpt-4o-mini (about $0.000601)"
    trace = booked(raw.headers["x-request-id"]).trace
    assert trace["chain"] == ["up/gpt-4o-mini"]
    assert trace["skipped"][0]["model"] == "up2/gpt-4o"
    assert trace["routing"]["strategy"] == "budget" and trace["routing"]["inputs"]["ceiling_usd"] == "0.005"


def test_a_streamed_answer_carries_the_reason_too_and_a_header_gives_the_ceiling(
    client: openai.OpenAI, budget_route: Route
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, stream=True, extra_headers={"x-switchyard-max-price": "1"}
    )
    assert raw.headers["x-switchyard-route-reason"].startswith("auto: cheapest under $1.00 -> up/gpt-4o-mini")
    list(raw.parse())


def test_a_ceiling_no_model_fits_is_a_400_in_openais_shape_and_nothing_is_booked(
    client: openai.OpenAI, budget_route: Route
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", messages=HELLO, metadata={"max_price": "0.0000001"})
    assert caught.value.code == "model_not_supported"
    assert "No model of route `auto` is expected to cost at most" in caught.value.body["message"]
    assert UsageRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("metadata", "headers", "param"),
    [
        ({"max_price": "cheap"}, {}, "metadata.max_price"),
        ({"max_price": "-1"}, {}, "metadata.max_price"),
        ({}, {"x-switchyard-max-price": "NaN"}, "x-switchyard-max-price"),
        ({"k": 1}, {}, "metadata.k"),
        ({f"k{n}": "v" for n in range(17)}, {}, "metadata"),
        ({"session_id": "s" * 201}, {}, "metadata.session_id"),
        ({"tags": ",".join(f"t{n}" for n in range(17))}, {}, "metadata.tags"),
    ],
)
def test_bad_hints_are_refused_naming_the_field(
    client: openai.OpenAI, budget_route: Route, metadata: dict[str, Any], headers: dict[str, str], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post(
            "/chat/completions",
            body={"model": "auto", "messages": HELLO, "metadata": metadata},
            cast_to=object,
            options={"headers": headers},
        )
    assert caught.value.body["param"] == param
    assert caught.value.type == "invalid_request_error"


def test_a_session_stays_on_one_model_of_a_weighted_split(client: openai.OpenAI, registry: dict[str, Any]) -> None:
    route: Route = registry["routes"]["auto"]
    route.strategy = "weighted"
    route.settings = {"weights": {"up/gpt-4o-mini": 1, "up2/gpt-4o": 1}}
    route.full_clean()
    route.save()
    answered = {
        client.chat.completions.with_raw_response.create(
            model="auto", messages=HELLO, metadata={"session_id": "conversation-42"}
        ).headers["x-switchyard-model"]
        for _ in range(4)
    }
    assert len(answered) == 1


def test_a_prompt_with_an_email_address_never_reaches_a_provider_that_may_keep_it(
    client: openai.OpenAI, registry: dict[str, Any], upstream: FakeOpenAI
) -> None:
    private = Route.objects.create(name="private")
    RouteStep.objects.create(route=private, model=registry["models"]["gpt"], position=0)
    RouteStep.objects.create(route=private, model=registry["models"]["sim"], position=1)
    mail = [{"role": "user", "content": "Draft a reply to jane.doe@example.com"}]

    raw = client.chat.completions.with_raw_response.create(model="private", messages=mail)

    assert raw.headers["x-switchyard-model"] == "sim/swift"
    assert upstream.requests == []
    trace = booked(raw.headers["x-request-id"]).trace
    assert trace["routing"]["sensitivity"] == {"found": ["email"], "tagged": False}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="auto", messages=mail)
    assert caught.value.code == "sensitive_data"
    assert "jane.doe@example.com" not in caught.value.body["message"]
    assert upstream.requests == []


def test_a_fastest_route_answers_with_the_model_measured_fastest_in_every_process(
    client: openai.OpenAI, registry: dict[str, Any], redis_client: Any
) -> None:
    route: Route = registry["routes"]["auto"]
    route.strategy = "fastest"
    route.settings = {"by": "ttft", "min_calls": 1}
    route.full_clean()
    route.save()
    redis_client.delete(KEY)
    try:
        first = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
        assert first.headers["x-switchyard-model"] == "up/gpt-4o-mini"
        assert first.headers["x-switchyard-route-reason"] == "auto: no measurements yet: the route's order"
        figures = {"answered": 5, "latency_p50": 0, "tried": 5, "failed": 0}
        model_health_store(
            {
                "at": "2026-12-05T12:00:00+00:00",
                "windows": {
                    "1": {
                        "up/gpt-4o-mini": figures | {"ttft_p50": 700.0},
                        "up2/gpt-4o": figures | {"ttft_p50": 120.0},
                    }
                },
            }
        )
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
        assert raw.headers["x-switchyard-model"] == "up2/gpt-4o"
        assert (
            raw.headers["x-switchyard-route-reason"] == "auto: fastest first token (p50 120 ms) over 1 h -> up2/gpt-4o"
        )
    finally:
        redis_client.delete(KEY)


def test_a_quality_route_follows_the_callers_own_votes_once_they_are_enough(
    client: openai.OpenAI, registry: dict[str, Any], alice: Any, redis_client: Any
) -> None:
    route: Route = registry["routes"]["auto"]
    route.strategy = "quality"
    route.settings = {"default": "up/gpt-4o-mini", "margin": 50, "min_votes": 3}
    route.full_clean()
    route.save()
    coding = [{"role": "user", "content": "Write a Python function that fixes this traceback"}]
    scope = f"user:{alice.pk}"
    redis_client.hdel(STANDINGS_KEY, scope)
    try:
        first = client.chat.completions.with_raw_response.create(model="auto", messages=coding)
        assert first.headers["x-switchyard-model"] == "up/gpt-4o-mini"
        assert (
            first.headers["x-switchyard-route-reason"]
            == "auto: coding: 0 votes, too few: the default -> up/gpt-4o-mini"
        )

        # Alice's blind votes: the dearer model won every coding duel. Each vote is published by the worker.
        for _ in range(3):
            run = PlaygroundRun.objects.create(user=alice, prompt=coding[0]["content"], blind=True)
            for position, model in enumerate(("up2/gpt-4o", "up/gpt-4o-mini")):
                RunPanel.objects.create(
                    run=run,
                    position=position,
                    label=f"Model {position}",
                    requested=model,
                    model=model,
                    status="ok",
                    call_id=uuid.uuid4().hex,
                )
            vote_cast(run=run, user=alice, outcome="best", winner_panel=run.panels.get(position=0))
        wait_for(lambda: b'"votes":3' in (redis_client.hget(STANDINGS_KEY, scope) or b""), "3 votes published")

        raw = client.chat.completions.with_raw_response.create(model="auto", messages=coding)
        assert raw.headers["x-switchyard-model"] == "up2/gpt-4o"
        assert raw.headers["x-switchyard-route-reason"].startswith("auto: coding: up2/gpt-4o is the best (")
        trace = booked(raw.headers["x-request-id"]).trace
        assert trace["routing"]["inputs"]["votes"] == 3 and trace["routing"]["inputs"]["best"] == "up2/gpt-4o"
    finally:
        redis_client.hdel(STANDINGS_KEY, scope)
