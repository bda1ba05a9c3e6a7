"""A cascade route through /v1: the cheap answer is sent only once it passed its checks, else the next tier answers."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import openai
import pytest

from billing.money import usage_cost
from routing.models import CascadeOutcome, Provider, Route
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import wire
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello!"}]
# What the recorded answer says, and costs on gpt-4o-mini (19 tokens in, 10 out at $0.15 and $0.60 a million).
RECORDED = json.loads(wire("openai-chat-response.json"))["choices"][0]["message"]["content"]
MINI_COST = usage_cost(
    input_tokens=19, output_tokens=10, input_per_million=Decimal("0.15"), output_per_million=Decimal("0.60")
)


@pytest.fixture
def cascade(registry: dict[str, Any]) -> Route:
    """auto: gpt-4o-mini first, then gpt-4o."""
    route: Route = registry["routes"]["auto"]
    route.strategy = "cascade"
    route.settings = {}
    route.full_clean()
    route.save()
    return route


def test_an_answer_that_passes_is_the_cheap_models_and_nothing_more_is_asked(
    client: openai.OpenAI, cascade: Route, upstream: FakeOpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)

    assert raw.parse().choices[0].message.content == RECORDED
    assert raw.headers["x-switchyard-model"] == "up/gpt-4o-mini"
    assert raw.headers["x-switchyard-route-reason"] == "auto: cascade from up/gpt-4o-mini"
    assert len(upstream.requests) == 1
    record = booked(raw.headers["x-request-id"])
    assert (record.escalations, record.extra_cost_usd, record.cost_usd) == (0, 0, MINI_COST)


def test_an_answer_that_is_not_the_json_asked_for_escalates_and_both_answers_are_booked(
    client: openai.OpenAI, cascade: Route, upstream: FakeOpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, response_format={"type": "json_object"}
    )

    # The last tier's answer is sent whatever it is: there is no one left to ask.
    assert raw.headers["x-switchyard-model"] == "up2/gpt-4o"
    assert raw.parse().choices[0].message.content == RECORDED
    assert [json.loads(r.body)["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o"]
    record = booked(raw.headers["x-request-id"])
    escalated = record.attempts[0]
    assert escalated.pop("elapsed_ms") >= 0
    assert escalated == {
        "model": "up/gpt-4o-mini",
        "provider": "up",
        "outcome": "escalated",
        "message": "JSON was asked for, and the answer is not valid JSON",
        "input_tokens": 19,
        "output_tokens": 10,
        "cost_usd": str(MINI_COST),
    }
    own = usage_cost(
        input_tokens=19, output_tokens=10, input_per_million=Decimal("2.50"), output_per_million=Decimal("10.00")
    )
    assert (record.escalations, record.extra_cost_usd) == (1, MINI_COST)
    assert record.cost_usd == own + MINI_COST


def test_a_streamed_cheap_answer_that_fails_its_check_never_reaches_the_client(
    client: openai.OpenAI, cascade: Route, upstream: FakeOpenAI
) -> None:
    # The cheap model stops at its token limit; the dear one answers in full.
    upstream.queue(FakeOpenAI.length_stream(), FakeOpenAI.stream())

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO, stream=True)
    chunks = list(raw.parse())

    assert {chunk.model for chunk in chunks if chunk.choices} == {"up2/gpt-4o"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    record = booked(raw.headers["x-request-id"])
    assert record.model == "up2/gpt-4o" and record.escalations == 1
    assert record.attempts[0]["message"] == "the answer stopped at its token limit"


def test_when_no_tier_after_it_answers_the_escalated_answer_is_sent_after_all(
    client: openai.OpenAI, cascade: Route, upstream: FakeOpenAI
) -> None:
    upstream.queue(FakeOpenAI.completion(), FakeOpenAI.server_error())

    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, response_format={"type": "json_object"}
    )

    assert raw.headers["x-switchyard-model"] == "up/gpt-4o-mini"
    assert raw.parse().choices[0].message.content == RECORDED
    record = booked(raw.headers["x-request-id"])
    assert [a["outcome"] for a in record.attempts] == ["escalated", "unavailable", "ok"]
    # Booked once, at the cheap answer's own cost: it is the answer, not an escalation.
    assert (record.escalations, record.cost_usd) == (0, MINI_COST)


def kept_outcomes(count: int, timeout: float = 15) -> list[CascadeOutcome]:
    """The outcomes kept, once there are `count`: the worker keeps one a moment after booking its call."""
    deadline = time.monotonic() + timeout
    while CascadeOutcome.objects.count() < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(CascadeOutcome.objects.order_by("pk"))


def test_a_learning_cascade_keeps_what_its_checks_said_as_graded_prompts(
    client: openai.OpenAI, cascade: Route, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    cascade.settings = {"learn": True}
    cascade.save()

    client.chat.completions.create(model="auto", messages=HELLO, response_format={"type": "json_object"})
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi there"}])
    # Personal data: answered (its providers keep no data), never kept.
    for provider in Provider.objects.filter(name__in=["up", "up2"]):
        provider.keeps_no_data = True
        provider.save()
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Write to jane.doe@example.com"}]
    )
    booked(raw.headers["x-request-id"])

    escalated, passed = kept_outcomes(2)
    assert (escalated.prompt, escalated.escalated_from, escalated.answered_by) == (
        "Hello!",
        ["up/gpt-4o-mini"],
        "up2/gpt-4o",
    )
    assert escalated.tiers == ["up/gpt-4o-mini", "up2/gpt-4o"]
    assert (passed.prompt, passed.escalated_from, passed.answered_by) == ("Hi there", [], "up/gpt-4o-mini")
    assert not CascadeOutcome.objects.filter(prompt__contains="jane.doe").exists()


def test_a_cascade_that_does_not_learn_keeps_no_prompt(
    client: openai.OpenAI, cascade: Route, upstream: FakeOpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=HELLO, response_format={"type": "json_object"}
    )
    booked(raw.headers["x-request-id"])

    assert CascadeOutcome.objects.count() == 0
