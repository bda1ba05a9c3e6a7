from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import openai
import pytest

from billing.models import ApiKey, UsageRecord
from switchyard.redis_clients import get_redis
from tests.fakes.openai import FakeOpenAI
from tests.usage_records import all_booked, booked

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello!"}]
VALID = {"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}


def test_it_answers_a_non_streaming_call_and_books_it(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="up/gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello! How can I assist you today?"
    assert completion.usage.prompt_tokens == 19
    assert raw.headers["x-switchyard-model"] == "up/gpt-4o-mini"
    record = booked(raw.headers["x-request-id"])
    assert record.status == "ok"
    assert (record.input_tokens, record.output_tokens) == (19, 10)
    assert record.cost_usd == Decimal("0.0000088500")
    assert raw.headers["x-switchyard-cost-usd"] == "0.0000088500"
    assert raw.http_response.json()["usage"]["cost"] == 0.00000885
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-upstream-secret"


def test_it_streams_with_usage_and_cost(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="up/gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello!"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert "x-switchyard-cost-usd" not in raw.headers, "a stream's headers go out before its cost is known"
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello")
    usage = chunks[-1].usage
    assert usage is not None and usage.total_tokens > 0
    # The cost rides in the usage chunk instead, as OpenRouter sends it, and matches the booking;
    # so do the attempts, whole.
    assert usage.model_extra == {
        "cost": float(booked(raw.headers["x-request-id"]).cost_usd),
        "attempts": [{"model": "up/gpt-4o-mini", "outcome": "ok"}],
    }
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]


def test_a_streamed_answer_s_headers_name_its_route_and_the_attempts_so_far(
    client: openai.OpenAI, upstream: FakeOpenAI
) -> None:
    upstream.queue(FakeOpenAI.error(429, "openai-error-429-rate-limit.json"))
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Hello!"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-switchyard-route"] == "auto"
    assert raw.headers["x-switchyard-model"] == "up2/gpt-4o"
    assert raw.headers["x-switchyard-attempts"] == "up/gpt-4o-mini=rate_limited, up2/gpt-4o=answering"
    usage = list(raw.parse())[-1].usage
    assert usage is not None
    assert usage.model_extra["attempts"] == [
        {"model": "up/gpt-4o-mini", "outcome": "rate_limited"},
        {"model": "up2/gpt-4o", "outcome": "ok"},
    ]


def test_the_sampling_parameters_reach_the_provider(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    client.chat.completions.create(
        model="up/gpt-4o-mini",
        messages=HELLO,
        temperature=0.2,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        seed=42,
    )
    sent = upstream.requests[0].json()
    assert {name: sent[name] for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "seed": 42,
    }


def test_reasoning_effort_reaches_only_a_model_tagged_reasoning(
    client: openai.OpenAI, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, reasoning_effort="low")
    tagged = registry["models"]["gpt"]
    tagged.capabilities = [*tagged.capabilities, "reasoning"]
    tagged.save()
    client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, reasoning_effort="low")

    untagged, reasoning = (sent.json() for sent in upstream.requests)
    assert "reasoning_effort" not in untagged
    assert reasoning["reasoning_effort"] == "low"


def test_it_falls_back_when_the_first_model_is_rate_limited(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    upstream.queue(FakeOpenAI.rate_limited(retry_after="3"))
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    assert raw.headers["x-switchyard-model"] == "up2/gpt-4o"
    assert raw.headers["x-switchyard-attempts"] == "up/gpt-4o-mini=rate_limited, up2/gpt-4o=ok"
    assert raw.headers["x-switchyard-route"] == "auto"
    record = booked(raw.headers["x-request-id"])
    assert record.model == "up2/gpt-4o"
    assert [a["outcome"] for a in record.attempts] == ["rate_limited", "ok"]


def test_it_answers_503_when_every_model_fails(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    upstream.queue(FakeOpenAI.rate_limited(retry_after="3"), FakeOpenAI.overloaded())
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 503
    assert "up/gpt-4o-mini=rate_limited" in caught.value.message
    assert all_booked(1).get().status == "error"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
        ({"model": 4, "messages": HELLO}, "model", "invalid_type"),
        ({"model": "up/gpt-4o-mini"}, "messages", "missing_required_parameter"),
        ({"model": "up/gpt-4o-mini", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "up/gpt-4o-mini", "messages": []}, "messages", "empty_array"),
        (
            {"model": "up/gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (VALID | {"temperature": "hot"}, "temperature", "invalid_type"),
        (VALID | {"top_p": 1.5}, "top_p", "decimal_above_max_value"),
        (VALID | {"presence_penalty": -3}, "presence_penalty", "decimal_below_min_value"),
        (VALID | {"frequency_penalty": True}, "frequency_penalty", "invalid_type"),
        (VALID | {"seed": 4.2}, "seed", "invalid_type"),
        (VALID | {"max_completion_tokens": 0}, "max_completion_tokens", "integer_below_min_value"),
        (VALID | {"stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
        (VALID | {"n": 2}, "n", "unsupported_value"),
        (VALID | {"parallel_tool_calls": "no"}, "parallel_tool_calls", "invalid_type"),
        (VALID | {"reasoning_effort": 3}, "reasoning_effort", "invalid_type"),
        (
            VALID | {"tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name",
            "missing_required_parameter",
        ),
    ],
)
def test_it_refuses_malformed_bodies_naming_the_field_with_openais_code(
    client: openai.OpenAI, body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=object)
    assert caught.value.body["param"] == param
    assert caught.value.code == code
    assert caught.value.type == "invalid_request_error"
    assert UsageRecord.objects.count() == 0


def test_an_out_of_range_number_is_refused_in_openais_words(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, temperature=3)
    assert caught.value.body["message"] == (
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead."
    )


@pytest.mark.parametrize("body", [{"model": "up/gpt-4o-mini", "messages": HELLO}, {"model": "up/gpt-4o-mini"}])
def test_a_call_keeps_its_keys_last_used_time(client: openai.OpenAI, body: dict[str, Any]) -> None:
    """Also when the call is refused: the key was used all the same."""
    key = ApiKey.objects.get()
    get_redis().delete(f"sy:apikey:{key.pk}:used")
    with contextlib.suppress(openai.BadRequestError):
        client.post("/chat/completions", body=body, cast_to=object)
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_it_refuses_a_bad_key(gateway_url: str, registry: dict[str, Any]) -> None:
    bad = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="sk-sy-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="auto", messages=[{"role": "user", "content": "Hi"}])


def test_it_answers_404_for_an_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope/nothing", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.code == "model_not_found"


def test_it_lists_models_and_routes(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"up/gpt-4o-mini", "up2/gpt-4o", "sim/swift", "auto"} <= ids
    assert client.models.retrieve("auto").owned_by == "switchyard"
