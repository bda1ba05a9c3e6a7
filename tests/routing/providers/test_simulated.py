"""What is particular to the simulated provider; the contract suite (test_contract.py) covers the rest."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from routing import tokens
from routing.calls import worker_loop
from routing.demo import SIMULATED
from routing.providers.errors import ErrorKind
from routing.providers.simulated import SimulatedAdapter
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    ModelConfig,
    ResponseFormat,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.routing.providers.stream_checks import collect, text_of

T = TypeVar("T")

QUESTION = "How should I plan a database migration for a busy checkout service?"
WEATHER_TOOL = ToolSpec(
    name="get_weather",
    description="Get the current weather in a given location",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["location"],
    },
)


def make_adapter(
    *,
    model_id: str = "sim-small",
    timeout_seconds: float = 5.0,
    context_window: int = 8192,
    max_output_tokens: int = 4096,
    **options: Any,
) -> SimulatedAdapter:
    config = ModelConfig(
        provider_name="Simulated",
        provider_kind="simulated",
        model_id=model_id,
        upstream_name=model_id,
        timeout_seconds=timeout_seconds,
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        options={"first_token_ms": 0, "tokens_per_second": 0, **options},
    )
    return SimulatedAdapter(config)


def ask(content: str = QUESTION, *, seed: str = "seed-1", **fields: Any) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=content),), seed=seed, **fields)


def arguments_of(events: list[Event]) -> str:
    return "".join(e.arguments for e in events if isinstance(e, ToolCallDelta))


def on_loop(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` on the call loop, which runs only coroutines (anext and aclose give other awaitables)."""

    async def wait() -> T:
        return await awaitable

    return worker_loop.run(wait())


def test_it_streams_one_delta_per_token() -> None:
    events = collect(make_adapter(), ask())

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == events[-2].output_tokens


def test_the_answer_refers_to_the_prompt() -> None:
    text = text_of(collect(make_adapter(), ask()))

    assert "database migration" in text
    assert "checkout" in text


def test_the_same_seed_gives_the_same_answer() -> None:
    adapter = make_adapter()

    assert collect(adapter, ask(seed="a")) == collect(adapter, ask(seed="a"))


def test_another_seed_gives_another_answer() -> None:
    adapter = make_adapter()

    assert text_of(collect(adapter, ask(seed="a"))) != text_of(collect(adapter, ask(seed="b")))


@pytest.mark.parametrize("style", ["concise", "plain", "friendly", "formal", "thorough"])
def test_each_style_answers_differently_from_the_default(style: str) -> None:
    balanced = text_of(collect(make_adapter(), ask()))

    assert text_of(collect(make_adapter(style=style), ask())) != balanced


def test_it_keeps_the_answer_near_output_tokens() -> None:
    usage = collect(make_adapter(output_tokens=200), ask())[-2]

    assert 150 <= usage.output_tokens <= 200


def test_a_prompt_about_code_gets_a_fenced_code_block() -> None:
    text = text_of(collect(make_adapter(), ask("Write a Python function that deduplicates customer emails")))

    assert "```python\ndef " in text
    assert text.count("```") == 2


def test_it_handles_non_english_prompts_without_broken_characters() -> None:
    text = text_of(collect(make_adapter(), ask("Расскажи, пожалуйста, про погоду в Москве")))

    assert "Москве" in text
    assert "\ufffd" not in text


def test_max_tokens_cuts_the_answer_and_finishes_with_length() -> None:
    events = collect(make_adapter(output_tokens=300), ask(max_tokens=12))

    assert events[-1] == Finish(FinishReason.LENGTH)
    assert events[-2].output_tokens == 12
    assert tokens.estimate_text_tokens(text_of(events)) == 12


def test_the_models_max_output_tokens_also_cuts_the_answer() -> None:
    events = collect(make_adapter(max_output_tokens=7, output_tokens=300), ask(max_tokens=100))

    assert events[-1] == Finish(FinishReason.LENGTH)
    assert events[-2].output_tokens == 7


def test_it_stops_before_a_stop_sequence() -> None:
    full = text_of(collect(make_adapter(), ask()))
    stop = full.split()[3]

    events = collect(make_adapter(), ask(stop=(stop,)))

    assert text_of(events) == full[: full.find(stop)]
    assert events[-1] == Finish(FinishReason.STOP)


def test_a_prompt_longer_than_the_context_window_fails_as_context_too_long() -> None:
    request = ask("word " * 100)

    events = collect(make_adapter(context_window=50), request)

    assert isinstance(events[-1], StreamError)
    assert events[-1].error.kind == ErrorKind.CONTEXT_TOO_LONG
    assert events[-2] == Usage(tokens.estimate_request_tokens(request), 0, estimated=True)


def test_another_model_answers_the_same_call_differently() -> None:
    small = text_of(collect(make_adapter(), ask()))

    assert text_of(collect(make_adapter(model_id="sim-large"), ask())) != small


def test_a_timeout_waits_for_the_timeout_and_no_longer_than_needed() -> None:
    adapter = make_adapter(timeout_seconds=0.3, fail_rate=1.0, fail_mode="timeout")

    started = time.monotonic()
    events = collect(adapter, ask())
    elapsed = time.monotonic() - started

    assert events[-1].error.kind == ErrorKind.TIMEOUT
    assert 0.24 <= elapsed < 2


def test_a_first_token_later_than_the_timeout_is_a_timeout() -> None:
    adapter = make_adapter(timeout_seconds=0.2, first_token_ms=10_000)

    started = time.monotonic()
    events = collect(adapter, ask())

    assert events[-1].error.kind == ErrorKind.TIMEOUT
    assert time.monotonic() - started < 2


def test_fail_rate_fails_about_that_share_of_seeds() -> None:
    adapter = make_adapter(fail_rate=0.3, fail_mode="overloaded", output_tokens=5)

    failures = sum(isinstance(collect(adapter, ask(seed=f"s{n}"))[-1], StreamError) for n in range(200))

    assert 40 <= failures <= 80


def test_whether_a_call_fails_depends_only_on_model_seed_and_prompt() -> None:
    adapter = make_adapter(fail_rate=0.5, output_tokens=5)
    outcomes = [isinstance(collect(adapter, ask(seed=f"s{n}"))[-1], StreamError) for n in range(20)]

    assert outcomes == [isinstance(collect(adapter, ask(seed=f"s{n}"))[-1], StreamError) for n in range(20)]
    assert any(outcomes) and not all(outcomes)


def test_paced_streaming_takes_about_the_configured_time() -> None:
    adapter = make_adapter(first_token_ms=100, tokens_per_second=100, output_tokens=40)

    started = time.monotonic()
    events = collect(adapter, ask())
    elapsed = time.monotonic() - started

    deltas = sum(isinstance(e, TextDelta) for e in events)
    expected = 0.1 + (deltas - 1) / 100
    assert elapsed >= 0.8 * expected


def test_the_first_token_arrives_after_first_token_ms() -> None:
    adapter = make_adapter(first_token_ms=150, tokens_per_second=0)

    started = time.monotonic()
    stream = adapter.stream(ask())
    on_loop(anext(stream))

    assert time.monotonic() - started >= 0.12


def test_closing_the_stream_early_stops_it_at_once() -> None:
    adapter = make_adapter(tokens_per_second=20, output_tokens=400)
    stream = adapter.stream(ask())
    on_loop(anext(stream))
    on_loop(anext(stream))

    started = time.monotonic()
    on_loop(stream.aclose())

    # The whole answer would take 20 s.
    assert time.monotonic() - started < 1
    assert on_loop(anext(stream, None)) is None


def test_it_fills_the_tool_arguments_from_the_prompt_and_the_schema() -> None:
    events = collect(make_adapter(), ask("What's the weather like in Paris?", tools=(WEATHER_TOOL,)))

    arguments = json.loads(arguments_of(events))
    assert arguments["location"] == "Paris"
    assert arguments["unit"] in ("celsius", "fahrenheit")
    assert 1 <= arguments["days"] <= 7


def test_it_answers_in_text_when_no_tool_fits_the_prompt() -> None:
    events = collect(make_adapter(), ask(tools=(WEATHER_TOOL,)))

    assert events[-1] == Finish(FinishReason.STOP)
    assert not any(isinstance(e, ToolCallDelta) for e in events)


def test_tool_choice_none_never_calls_a_tool() -> None:
    request = ask("What's the weather in Paris?", tools=(WEATHER_TOOL,), tool_choice=ToolChoice(mode="none"))

    assert collect(make_adapter(), request)[-1] == Finish(FinishReason.STOP)


def test_a_forced_tool_is_called_whatever_the_prompt() -> None:
    other = ToolSpec(name="lookup_order", parameters={"type": "object", "properties": {"order_id": {"type": "string"}}})
    request = ask(tools=(WEATHER_TOOL, other), tool_choice=ToolChoice(mode="function", name="lookup_order"))

    events = collect(make_adapter(), request)

    assert events[0].name == "lookup_order"
    assert set(json.loads(arguments_of(events))) == {"order_id"}
    assert events[-1] == Finish(FinishReason.TOOL_CALLS)


def test_required_tool_choice_calls_the_first_tool() -> None:
    events = collect(make_adapter(), ask(tools=(WEATHER_TOOL,), tool_choice=ToolChoice(mode="required")))

    assert events[0].name == "get_weather"


def test_forcing_an_unknown_tool_is_a_bad_request() -> None:
    request = ask(tools=(WEATHER_TOOL,), tool_choice=ToolChoice(mode="function", name="nope"))

    assert collect(make_adapter(), request)[-1].error.kind == ErrorKind.BAD_REQUEST


def test_after_a_tool_result_it_answers_in_text_using_the_result() -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"location": "Paris"}')
    request = ChatRequest(
        messages=(
            Message(role="user", content="What's the weather like in Paris?"),
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", tool_call_id="call_1", content="18 degrees and sunny"),
        ),
        tools=(WEATHER_TOOL,),
        seed="seed-1",
    )

    events = collect(make_adapter(), request)

    assert events[-1] == Finish(FinishReason.STOP)
    assert "According to get_weather, the result is: 18 degrees and sunny" in text_of(events)


def test_json_object_output_is_valid_json() -> None:
    events = collect(make_adapter(), ask(response_format=ResponseFormat(type="json_object")))

    answer = json.loads(text_of(events))
    assert answer["topic"]
    assert events[-1] == Finish(FinishReason.STOP)


def test_json_schema_output_fits_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "temperature": {"type": "number", "minimum": -30, "maximum": 45},
            "units": {"type": "string", "enum": ["c", "f"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "verified": {"type": "boolean"},
        },
        "required": ["city", "temperature", "units"],
    }
    response_format = ResponseFormat(type="json_schema", schema=schema)
    request = ask("What's the weather like in Lisbon?", response_format=response_format)

    answer = json.loads(text_of(collect(make_adapter(), request)))

    assert answer["city"] == "Lisbon"
    assert -30 <= answer["temperature"] <= 45
    assert answer["units"] in ("c", "f")
    assert isinstance(answer["tags"], list) and isinstance(answer["verified"], bool)


def test_a_bad_option_fails_the_call_as_bad_request() -> None:
    events = collect(make_adapter(fail_mode="sometimes"), ask())

    assert events[-1].error.kind == ErrorKind.BAD_REQUEST
    assert "fail_mode" in events[-1].error.message


def test_a_malformed_schema_still_gets_json_back() -> None:
    schema = {"type": "object", "properties": {"count": {"type": "integer", "minimum": "one"}, "odd": "not a schema"}}
    request = ask(response_format=ResponseFormat(type="json_schema", schema=schema))

    answer = json.loads(text_of(collect(make_adapter(), request)))

    assert isinstance(answer["count"], int)


def test_the_demo_registrys_simulated_options_are_all_valid() -> None:
    for model in SIMULATED["models"]:
        options = {**model["options"], "first_token_ms": 0, "tokens_per_second": 0, "fail_rate": 0}
        events = collect(make_adapter(**options), ask())

        assert events[-1] == Finish(FinishReason.STOP), model["name"]
