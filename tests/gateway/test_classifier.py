"""A classifier route through /v1: a small model names the prompt's category, and that category's model answers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import openai
import pytest
import redis

from billing.money import usage_cost
from routing.calls.classify import CACHE_PREFIX
from routing.models import Route
from tests.fakes.openai import FakeOpenAI
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

CODE = [{"role": "user", "content": "Write a Python function that parses ISO dates, and explain the regex."}]
# The recorded stream's usage (19 tokens in, 10 out) on gpt-4o-mini at $0.15 / $0.60 a million, and on gpt-4o.
MINI_COST = usage_cost(
    input_tokens=19, output_tokens=10, input_per_million=Decimal("0.15"), output_per_million=Decimal("0.60")
)
FOUR_O_COST = usage_cost(
    input_tokens=19, output_tokens=10, input_per_million=Decimal("2.50"), output_per_million=Decimal("10.00")
)


@pytest.fixture(autouse=True)
def no_cached_classifications(redis_client: redis.Redis) -> None:
    for key in redis_client.scan_iter(f"{CACHE_PREFIX}*"):
        redis_client.delete(key)


@pytest.fixture
def classifier(registry: dict[str, Any]) -> Route:
    """auto: gpt-4o-mini classifies; quick questions go to it, coding to gpt-4o."""
    route: Route = registry["routes"]["auto"]
    route.strategy = "classifier"
    route.settings = {
        "model": "up/gpt-4o-mini",
        "categories": {"quick": "up/gpt-4o-mini", "coding": "up2/gpt-4o"},
        "timeout_ms": 2000,
    }
    route.full_clean()
    route.save()
    return route


def test_the_classifiers_category_picks_the_model_and_its_call_is_booked_with_the_answer(
    client: openai.OpenAI, classifier: Route, upstream: FakeOpenAI
) -> None:
    upstream.queue(FakeOpenAI.stream_saying("Coding."))

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=CODE)

    assert raw.headers["x-switchyard-model"] == "up2/gpt-4o"
    assert raw.headers["x-switchyard-route-reason"] == "auto: coding (by up/gpt-4o-mini) -> up2/gpt-4o"
    asked, answered = (json.loads(request.body) for request in upstream.requests)
    assert asked["model"] == "gpt-4o-mini" and asked["max_tokens"] <= 8
    assert "exactly one of these categories: quick, coding" in asked["messages"][0]["content"]
    assert answered["model"] == "gpt-4o"
    record = booked(raw.headers["x-request-id"])
    assert record.extra_cost_usd == MINI_COST
    assert record.cost_usd == FOUR_O_COST + MINI_COST
    inputs = record.trace["routing"]["inputs"]
    assert (inputs["category"], inputs["by"], inputs["answer"]) == ("coding", "up/gpt-4o-mini", "Coding.")
    assert inputs["cost"]["cost_usd"] == str(MINI_COST)


def test_an_identical_prompt_reuses_the_classification_and_pays_nothing_for_it(
    client: openai.OpenAI, classifier: Route, upstream: FakeOpenAI
) -> None:
    upstream.queue(FakeOpenAI.stream_saying("coding"))
    client.chat.completions.create(model="auto", messages=CODE)
    upstream.reset()

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=CODE)

    assert raw.headers["x-switchyard-model"] == "up2/gpt-4o"
    assert [json.loads(request.body)["model"] for request in upstream.requests] == ["gpt-4o"]
    record = booked(raw.headers["x-request-id"])
    assert record.trace["routing"]["inputs"]["cached"] is True
    assert (record.extra_cost_usd, record.cost_usd) == (0, FOUR_O_COST)


def test_a_classifier_past_its_timeout_leaves_the_choice_to_the_local_scorer(
    client: openai.OpenAI, classifier: Route, upstream: FakeOpenAI
) -> None:
    classifier.settings = {**classifier.settings, "timeout_ms": 300}
    classifier.save()
    upstream.queue(FakeOpenAI.slow_first_byte(3))

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=CODE)

    assert raw.headers["x-switchyard-route-reason"] == "auto: coding (by local scorer) -> up2/gpt-4o"
    inputs = booked(raw.headers["x-request-id"]).trace["routing"]["inputs"]
    assert inputs["why"] == "the classifier took over 300 ms"


def test_a_classifier_that_names_no_category_leaves_the_choice_to_the_local_scorer_and_is_still_paid_for(
    client: openai.OpenAI, classifier: Route, upstream: FakeOpenAI
) -> None:
    upstream.queue(FakeOpenAI.stream_saying("I am not sure."))

    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Who wrote 1984?"}]
    )

    assert raw.headers["x-switchyard-model"] == "up/gpt-4o-mini"
    record = booked(raw.headers["x-request-id"])
    assert record.trace["routing"]["inputs"]["why"] == "the classifier said 'I am not sure.'"
    assert record.extra_cost_usd == MINI_COST


def test_a_prompt_with_personal_data_is_never_sent_to_a_classifier_that_may_keep_it(
    client: openai.OpenAI, classifier: Route, upstream: FakeOpenAI
) -> None:
    mail = [{"role": "user", "content": "Write a Python script that emails jane.doe@example.com"}]

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="auto", messages=mail)

    assert refused.value.code == "sensitive_data"
    assert upstream.requests == []
