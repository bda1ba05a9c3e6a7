from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from routing.providers.anthropic import AnthropicAdapter
from routing.providers.errors import ErrorKind
from routing.providers.registry import adapter_for
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    ModelConfig,
    ResponseFormat,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.fakes import anthropic as fakes
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.server import Reply, serve, wire
from tests.routing.providers.stream_checks import assert_contract, collect, error_of, text_of, usage_of

API_KEY = "sk-ant-test-key"
HELLO = ChatRequest(messages=(Message(role="user", content="Hello, Claude"),))
WEATHER_TOOL = ToolSpec(
    name="get_weather",
    description="Get the current weather in a given location",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic()
    with serve(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def fake(upstream: tuple[FakeAnthropic, str]) -> FakeAnthropic:
    upstream[0].reset()
    return upstream[0]


@pytest.fixture
def config(upstream: tuple[FakeAnthropic, str]) -> ModelConfig:
    return ModelConfig(
        provider_name="anthropic",
        provider_kind="anthropic",
        model_id="claude-sonnet",
        upstream_name="claude-sonnet-4-5",
        base_url=f"{upstream[1]}/v1",
        api_key=API_KEY,
        timeout_seconds=5.0,
        max_output_tokens=2048,
    )


@pytest.fixture
def adapter(config: ModelConfig) -> AnthropicAdapter:
    return AnthropicAdapter(config)


def run(adapter: AnthropicAdapter, request: ChatRequest = HELLO) -> list[Event]:
    """All events of one call, after checking the stream contract."""
    events = collect(adapter, request)
    assert_contract(events)
    return events


def test_it_streams_the_recorded_text_usage_and_finish(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    events = run(adapter)

    assert text_of(events) == "Hello there!"
    assert usage_of(events) == Usage(input_tokens=11, output_tokens=6, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_copes_with_a_stream_split_at_odd_byte_boundaries(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    fake.queue(fakes.stream(chunk_size=7))

    events = run(adapter)

    assert text_of(events) == "Hello there!"
    assert usage_of(events) == Usage(input_tokens=11, output_tokens=6)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_parses_the_documented_stream_with_spaces_in_its_json(
    fake: FakeAnthropic, adapter: AnthropicAdapter
) -> None:
    fake.queue(fakes.stream("anthropic-messages-stream.sse", chunk_size=13))

    events = run(adapter)

    assert text_of(events) == "Hello!"
    assert usage_of(events) == Usage(input_tokens=25, output_tokens=15)


def test_it_sends_the_messages_request_with_its_headers(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    """The Messages API has top_p, but no penalties and no seed: those are left out."""
    request = ChatRequest(
        messages=(Message(role="user", content="Hello, Claude"),),
        system="You are a helpful assistant.",
        temperature=0.7,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        sampling_seed=42,
        max_tokens=1024,
        stop=("END",),
        user="user-42",
    )

    run(adapter, request)

    sent = fake.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "system": "You are a helpful assistant.",
        "temperature": 0.7,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "stream": True,
    }


def test_it_falls_back_to_the_model_output_limit_and_omits_unset_fields(
    fake: FakeAnthropic, adapter: AnthropicAdapter
) -> None:
    run(adapter)

    assert fake.requests[0].json() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "stream": True,
    }


def test_it_translates_tools_tool_calls_and_tool_results(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    request = ChatRequest(
        messages=(
            Message(role="user", content="Weather in Paris and Rome?"),
            Message(
                role="assistant",
                content="Checking both.",
                tool_calls=(
                    ToolCall(id="toolu_1", name="get_weather", arguments='{"location": "Paris"}'),
                    ToolCall(id="toolu_2", name="get_weather", arguments='{"location": "Rome"}'),
                ),
            ),
            Message(role="tool", tool_call_id="toolu_1", content="18C, sunny"),
            Message(role="tool", tool_call_id="toolu_2", content="24C, clear"),
            Message(role="user", content="Which is warmer?"),
        ),
        tools=(WEATHER_TOOL, ToolSpec(name="now")),
        tool_choice=ToolChoice(mode="auto"),
    )

    run(adapter, request)

    body = fake.requests[0].json()
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": WEATHER_TOOL.parameters,
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"location": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C, clear"},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice(mode="auto"), {"type": "auto"}),
        (ToolChoice(mode="required"), {"type": "any"}),
        (ToolChoice(mode="none"), {"type": "none"}),
        (ToolChoice(mode="function", name="get_weather"), {"type": "tool", "name": "get_weather"}),
    ],
)
def test_it_maps_tool_choice(
    fake: FakeAnthropic, adapter: AnthropicAdapter, choice: ToolChoice, expected: dict[str, str]
) -> None:
    run(adapter, dataclasses.replace(HELLO, tools=(WEATHER_TOOL,), tool_choice=choice))

    assert fake.requests[0].json()["tool_choice"] == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="required"), {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="none"), {"type": "none"}),
    ],
)
def test_it_carries_parallel_tool_calls_false_in_the_tool_choice(
    fake: FakeAnthropic, adapter: AnthropicAdapter, choice: ToolChoice | None, expected: dict[str, Any]
) -> None:
    request = dataclasses.replace(HELLO, tools=(WEATHER_TOOL,), tool_choice=choice, parallel_tool_calls=False)

    run(adapter, request)

    assert fake.requests[0].json()["tool_choice"] == expected


def test_it_sends_images_as_base64_or_url_sources(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    message = Message(
        role="user",
        content="What is in these?",
        images=("data:image/png;base64,iVBORw0KGgo=", "https://example.com/cat.jpg"),
    )

    run(adapter, ChatRequest(messages=(message,)))

    assert fake.requests[0].json()["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What is in these?"},
    ]


def test_it_asks_for_json_matching_the_schema_in_the_system_prompt(
    fake: FakeAnthropic, adapter: AnthropicAdapter
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    request = dataclasses.replace(
        HELLO, system="Be brief.", response_format=ResponseFormat(type="json_schema", schema=schema, name="answer")
    )

    run(adapter, request)

    system = fake.requests[0].json()["system"]
    assert system.startswith("Be brief.\n\n")
    assert "JSON object" in system
    assert json.dumps(schema) in system


def test_it_asks_for_a_json_object_without_a_schema(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    run(adapter, dataclasses.replace(HELLO, response_format=ResponseFormat(type="json_object")))

    system = fake.requests[0].json()["system"]
    assert "JSON object" in system
    assert "Schema" not in system


def test_it_reads_a_non_streaming_message(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    events = run(adapter, dataclasses.replace(HELLO, stream=False))

    assert "stream" not in fake.requests[0].json()
    assert text_of(events) == "Hello!"
    assert usage_of(events) == Usage(input_tokens=12, output_tokens=6, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_reads_tool_calls_from_a_non_streaming_message(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 300, "cache_read_input_tokens": 77, "output_tokens": 40},
    }
    fake.queue(Reply(headers=fakes.JSON_HEADERS, body=json.dumps(message).encode()))

    events = run(adapter, dataclasses.replace(HELLO, stream=False, tools=(WEATHER_TOOL,)))

    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(index=0, id="toolu_1", name="get_weather", arguments='{"location": "Paris"}')
    ]
    assert text_of(events) == "Checking."
    assert usage_of(events) == Usage(input_tokens=377, output_tokens=40)
    assert events[-1] == Finish(FinishReason.TOOL_CALLS)


def test_it_reassembles_a_streamed_tool_call(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    fake.queue(fakes.tool_use_stream(chunk_size=11))

    events = run(adapter, dataclasses.replace(HELLO, tools=(WEATHER_TOOL,)))

    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(index=0, id="toolu_01NRLabsLyVHZPKxbKvkfSMn", name="get_weather")
    assert all(call.index == 0 and call.arguments for call in calls[1:])
    assert "".join(call.arguments for call in calls) == '{"location": "Paris"}'
    assert text_of(events) == "I'll check the current weather in Paris for you."
    assert usage_of(events) == Usage(input_tokens=377, output_tokens=65)
    assert events[-1] == Finish(FinishReason.TOOL_CALLS)


def test_it_counts_cache_tokens_as_input(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    body = wire(fakes.RECORDED_STREAM).replace(
        b'"usage":{"input_tokens":11,"output_tokens":1}',
        b'"usage":{"input_tokens":11,"cache_creation_input_tokens":100,'
        b'"cache_read_input_tokens":2000,"output_tokens":1}',
    )
    fake.queue(fakes.stream_of(body))

    events = run(adapter)

    assert usage_of(events) == Usage(input_tokens=2111, output_tokens=6)


def test_it_takes_the_cumulative_counts_of_message_delta(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    body = wire(fakes.RECORDED_STREAM).replace(
        b'"usage":{"output_tokens":6}', b'"usage":{"input_tokens":11,"cache_read_input_tokens":40,"output_tokens":7}'
    )
    fake.queue(fakes.stream_of(body))

    events = run(adapter)

    assert usage_of(events) == Usage(input_tokens=51, output_tokens=7)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("pause_turn", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("model_context_window_exceeded", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
    ],
)
def test_it_maps_stop_reasons(
    fake: FakeAnthropic, adapter: AnthropicAdapter, stop_reason: str, finish: FinishReason
) -> None:
    body = wire(fakes.RECORDED_STREAM).replace(b'"stop_reason":"end_turn"', f'"stop_reason":"{stop_reason}"'.encode())
    fake.queue(fakes.stream_of(body))

    assert run(adapter)[-1] == Finish(finish)


@pytest.mark.parametrize(
    ("reply", "kind", "status_code"),
    [
        (fakes.rate_limited, ErrorKind.RATE_LIMITED, 429),
        (fakes.overloaded, ErrorKind.OVERLOADED, 529),
        (fakes.server_error, ErrorKind.UNAVAILABLE, 500),
        (fakes.unauthorized, ErrorKind.AUTH, 401),
        (fakes.forbidden, ErrorKind.AUTH, 403),
        (fakes.billing_error, ErrorKind.AUTH, 400),
        (fakes.bad_request, ErrorKind.BAD_REQUEST, 400),
        (fakes.prompt_too_long, ErrorKind.CONTEXT_TOO_LONG, 400),
        (fakes.not_found, ErrorKind.BAD_REQUEST, 404),
        (fakes.request_too_large, ErrorKind.CONTEXT_TOO_LONG, 413),
        (fakes.bad_gateway_html, ErrorKind.UNAVAILABLE, 502),
    ],
)
def test_it_maps_error_responses(
    fake: FakeAnthropic,
    adapter: AnthropicAdapter,
    reply: Callable[[], Reply],
    kind: ErrorKind,
    status_code: int,
) -> None:
    fake.queue(reply())

    events = run(adapter)

    error = error_of(events)
    assert (error.kind, error.status_code) == (kind, status_code)
    assert usage_of(events).estimated is True
    assert not any(isinstance(e, TextDelta) for e in events)


def test_it_takes_the_retry_delay_of_a_429_from_its_headers(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    fake.queue(fakes.rate_limited())

    error = error_of(run(adapter, dataclasses.replace(HELLO, stream=False)))

    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == 30
    assert error.provider_code == "rate_limit_error"


def test_it_keeps_the_upstream_message_and_no_key(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    fake.queue(fakes.unauthorized())

    error = error_of(run(adapter))

    assert error.message == "invalid x-api-key"
    assert API_KEY not in repr(error)


def test_it_reports_an_overloaded_error_event_after_the_text_that_arrived(
    fake: FakeAnthropic, adapter: AnthropicAdapter
) -> None:
    fake.queue(fakes.overloaded_mid_stream())

    events = run(adapter)

    assert text_of(events) == "Hello"
    assert usage_of(events).estimated is True
    error = error_of(events)
    assert error.kind is ErrorKind.OVERLOADED
    assert error.message == "Overloaded"


def test_it_times_out_when_the_first_byte_is_too_slow(
    fake: FakeAnthropic, config: ModelConfig
) -> None:
    fake.queue(fakes.slow_first_byte(0.5))
    adapter = AnthropicAdapter(dataclasses.replace(config, timeout_seconds=0.1))

    events = run(adapter)

    assert error_of(events).kind is ErrorKind.TIMEOUT


def test_it_reports_unavailable_when_the_connection_is_cut_mid_stream(
    fake: FakeAnthropic, adapter: AnthropicAdapter
) -> None:
    fake.queue(fakes.cut_mid_stream())

    events = run(adapter)

    assert text_of(events) == "Hello"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE
    usage = usage_of(events)
    assert usage.estimated is True
    assert usage.output_tokens == 1


def test_it_reports_unavailable_for_a_malformed_chunk(fake: FakeAnthropic, adapter: AnthropicAdapter) -> None:
    fake.queue(fakes.malformed_chunk())

    events = run(adapter)

    error = error_of(events)
    assert (error.kind, error.message) == (ErrorKind.UNAVAILABLE, "the provider sent a malformed chunk")


def test_it_reports_unavailable_when_the_connection_is_refused(config: ModelConfig) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    adapter = AnthropicAdapter(dataclasses.replace(config, base_url=f"http://127.0.0.1:{closed_port}/v1"))

    events = run(adapter)

    assert error_of(events).kind is ErrorKind.UNAVAILABLE


def test_the_registry_builds_it_for_kind_anthropic(config: ModelConfig) -> None:
    assert isinstance(adapter_for(config), AnthropicAdapter)
