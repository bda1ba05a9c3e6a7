from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from routing.providers.errors import ErrorKind
from routing.providers.openai_compat import OpenAICompatAdapter
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
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply, serve, wire
from tests.routing.providers.stream_checks import assert_contract, collect, error_of, text_of, usage_of

API_KEY = "sk-test-7f3a9c"
HELLO = ChatRequest(messages=(Message(role="user", content="Hello!"),), system="You are a helpful assistant.")


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with serve(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def fake(upstream: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    upstream[0].reset()
    yield upstream[0]
    upstream[0].reset()


def make_adapter(base_url: str, **overrides: Any) -> OpenAICompatAdapter:
    settings: dict[str, Any] = {
        "provider_name": "OpenAI",
        "provider_kind": "openai",
        "model_id": "gpt-4o-mini",
        "upstream_name": "gpt-4o-mini",
        "base_url": f"{base_url}/v1",
        "api_key": API_KEY,
        "timeout_seconds": 2.0,
        "connect_timeout_seconds": 1.0,
        **overrides,
    }
    return OpenAICompatAdapter(ModelConfig(**settings))


@pytest.fixture
def adapter(upstream: tuple[FakeOpenAI, str]) -> OpenAICompatAdapter:
    return make_adapter(upstream[1])


def run(adapter: OpenAICompatAdapter, request: ChatRequest = HELLO) -> list[Event]:
    events = collect(adapter, request)
    assert_contract(events)
    return events


@pytest.mark.parametrize("chunk_size", [0, 1, 7, 113])
def test_it_streams_the_recorded_text_usage_and_finish(
    fake: FakeOpenAI, adapter: OpenAICompatAdapter, chunk_size: int
) -> None:
    fake.queue(FakeOpenAI.stream(chunk_size=chunk_size))
    events = run(adapter)
    assert text_of(events) == "Hello! How can I assist you today?"
    assert usage_of(events) == Usage(input_tokens=19, output_tokens=10, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_skips_the_empty_content_of_the_role_chunk(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    events = run(adapter)
    assert all(event.text for event in events if isinstance(event, TextDelta))


def test_it_accepts_chunks_without_a_usage_key(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.stream("openai-chat-stream-recorded.sse", chunk_size=61))
    events = run(adapter)
    assert text_of(events) == (
        "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, "
        "I recommend checking a reliable weather website or a weather app."
    )
    assert usage_of(events) == Usage(input_tokens=14, output_tokens=30)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_parses_a_non_streaming_completion(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    events = run(adapter, ChatRequest(messages=HELLO.messages, stream=False))
    assert text_of(events) == "Hello! How can I assist you today?"
    assert usage_of(events) == Usage(input_tokens=19, output_tokens=10, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)
    body = fake.requests[0].json()
    assert body["stream"] is False
    assert "stream_options" not in body


def test_it_parses_non_streaming_tool_calls(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.completion("openai-chat-response-tool-calls.json"))
    events = run(adapter, ChatRequest(messages=HELLO.messages, stream=False))
    assert events[:-2] == [
        ToolCallDelta(
            index=0, id="call_abc123", name="get_current_weather", arguments='{\n"location": "Boston, MA"\n}'
        )
    ]
    assert usage_of(events) == Usage(input_tokens=82, output_tokens=17)
    assert events[-1] == Finish(FinishReason.TOOL_CALLS)


@pytest.mark.parametrize("chunk_size", [0, 5])
def test_it_streams_tool_calls_that_reassemble_to_the_recorded_arguments(
    fake: FakeOpenAI, adapter: OpenAICompatAdapter, chunk_size: int
) -> None:
    fake.queue(FakeOpenAI.tool_call_stream(chunk_size=chunk_size))
    events = run(adapter)
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert {delta.index for delta in deltas} == {0}
    assert deltas[0].id == "call_4XzlGBLtUe9dy3GVNV4jhq7h"
    assert deltas[0].name == "get_weather"
    assert all(delta.id is None and delta.name is None for delta in deltas[1:])
    assert "".join(delta.arguments for delta in deltas) == '{"city":"New York City"}'
    assert text_of(events) == ""
    assert usage_of(events) == Usage(input_tokens=44, output_tokens=16)
    assert events[-1] == Finish(FinishReason.TOOL_CALLS)


def test_it_maps_a_length_finish(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.length_stream())
    events = run(adapter)
    assert text_of(events) == '{"'
    assert usage_of(events) == Usage(input_tokens=79, output_tokens=1)
    assert events[-1] == Finish(FinishReason.LENGTH)


def test_it_maps_an_unknown_finish_reason_to_stop(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    body = wire("openai-chat-stream.sse").replace(b'"finish_reason":"stop"', b'"finish_reason":"eos"')
    fake.queue(Reply(headers=FakeOpenAI.stream().headers, body=body))
    assert run(adapter)[-1] == Finish(FinishReason.STOP)


def test_it_sends_the_translated_request(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    weather = ToolSpec(
        name="get_current_weather",
        description="Get the current weather in a given location",
        parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    )
    request = ChatRequest(
        system="You are a helpful assistant.",
        messages=(
            Message(role="user", content="What is in this picture?", images=("data:image/png;base64,iVBORw0KGgo=",)),
            Message(
                role="assistant",
                tool_calls=(ToolCall(id="call_1", name="get_current_weather", arguments='{"location":"Paris"}'),),
            ),
            Message(role="tool", content='{"temperature":21}', tool_call_id="call_1"),
            Message(role="assistant", content="It is 21 degrees."),
            Message(role="user", content="Thanks!"),
        ),
        temperature=0.7,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        sampling_seed=42,
        max_tokens=256,
        stop=("\n\n",),
        user="user-42",
        tools=(weather,),
        tool_choice=ToolChoice(mode="function", name="get_current_weather"),
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}, name="weather", strict=True),
    )
    run(adapter, request)
    sent = fake.requests[0]
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": '{"location":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature":21}'},
            {"role": "assistant", "content": "It is 21 degrees."},
            {"role": "user", "content": "Thanks!"},
        ],
        "temperature": 0.7,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "seed": 42,
        "max_tokens": 256,
        "stop": ["\n\n"],
        "user": "user-42",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "description": "Get the current weather in a given location",
                    "parameters": weather.parameters,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_current_weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": True},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize("mode", ["auto", "none", "required"])
def test_it_sends_tool_choice_modes_as_strings(fake: FakeOpenAI, adapter: OpenAICompatAdapter, mode: Any) -> None:
    run(adapter, ChatRequest(messages=HELLO.messages, tools=(ToolSpec(name="f"),), tool_choice=ToolChoice(mode=mode)))
    body = fake.requests[0].json()
    assert body["tool_choice"] == mode
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]


def test_it_sends_parallel_tool_calls_only_with_tools(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    run(adapter, ChatRequest(messages=HELLO.messages, tools=(ToolSpec(name="f"),), parallel_tool_calls=False))
    run(adapter, ChatRequest(messages=HELLO.messages, parallel_tool_calls=False))
    with_tools, without = (sent.json() for sent in fake.requests)
    assert with_tools["parallel_tool_calls"] is False
    # OpenAI refuses parallel_tool_calls in a request without tools.
    assert "parallel_tool_calls" not in without


@pytest.mark.parametrize(("capabilities", "sent"), [(frozenset({"reasoning"}), "high"), (frozenset(), None)])
def test_it_sends_reasoning_effort_only_to_reasoning_models(
    fake: FakeOpenAI, upstream: tuple[FakeOpenAI, str], capabilities: frozenset[str], sent: str | None
) -> None:
    adapter = make_adapter(upstream[1], capabilities=capabilities)
    run(adapter, ChatRequest(messages=HELLO.messages, reasoning_effort="high"))
    assert fake.requests[0].json().get("reasoning_effort") == sent


def test_it_asks_for_a_json_object(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    run(adapter, ChatRequest(messages=HELLO.messages, response_format=ResponseFormat(type="json_object")))
    assert fake.requests[0].json()["response_format"] == {"type": "json_object"}


def test_it_sends_max_completion_tokens_when_configured(
    fake: FakeOpenAI, upstream: tuple[FakeOpenAI, str]
) -> None:
    adapter = make_adapter(upstream[1], options={"max_tokens_field": "max_completion_tokens"})
    run(adapter, ChatRequest(messages=HELLO.messages, max_tokens=64))
    body = fake.requests[0].json()
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body


def test_it_sends_the_seed_under_the_configured_field(fake: FakeOpenAI, upstream: tuple[FakeOpenAI, str]) -> None:
    adapter = make_adapter(upstream[1], options={"seed_field": "random_seed"})
    run(adapter, ChatRequest(messages=HELLO.messages, sampling_seed=7))
    body = fake.requests[0].json()
    assert body["random_seed"] == 7
    assert "seed" not in body


def test_it_sends_no_authorization_without_a_key(
    fake: FakeOpenAI, upstream: tuple[FakeOpenAI, str]
) -> None:
    run(make_adapter(upstream[1], api_key=""))
    assert "authorization" not in fake.requests[0].headers


def test_it_maps_429_to_rate_limited_with_the_retry_after_header(
    fake: FakeOpenAI, adapter: OpenAICompatAdapter
) -> None:
    fake.queue(FakeOpenAI.rate_limited(retry_after="27"))
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retryable
    assert error.retry_after == 27.0
    assert error.status_code == 429
    assert error.provider_code == "rate_limit_exceeded"


def test_it_reads_retry_after_from_the_message_when_the_header_is_missing(
    fake: FakeOpenAI, adapter: OpenAICompatAdapter
) -> None:
    fake.queue(FakeOpenAI.rate_limited(retry_after=None))
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == pytest.approx(26.604)


def test_it_prefers_retry_after_ms(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    reply = FakeOpenAI.rate_limited(retry_after=None)
    reply.headers.append((b"retry-after-ms", b"1500"))
    fake.queue(reply)
    assert error_of(run(adapter)).retry_after == 1.5


def test_it_maps_insufficient_quota_to_auth(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.insufficient_quota())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.AUTH
    assert not error.retryable
    assert error.retry_after is None


def test_it_maps_a_context_length_error_to_context_too_long(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.context_too_long())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.CONTEXT_TOO_LONG
    assert error.provider_code == "context_length_exceeded"
    assert "maximum context length is 8192 tokens" in error.message


def test_it_maps_an_unknown_model_to_bad_request(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.model_not_found())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.BAD_REQUEST
    assert error.status_code == 404


def test_it_maps_401_to_auth(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.unauthorized())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.AUTH
    assert error.provider_code == "invalid_api_key"


def test_it_never_repeats_the_key_in_an_error_message(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    body = (
        b'{"error":{"message":"Incorrect API key provided: ' + API_KEY.encode() + b'.",'
        b'"type":"invalid_request_error","param":null,"code":"invalid_api_key"}}'
    )
    fake.queue(Reply(status=401, headers=[(b"content-type", b"application/json")], body=body))
    error = error_of(run(adapter))
    assert API_KEY not in error.message
    assert API_KEY not in repr(error)


def test_it_maps_500_to_unavailable(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.server_error())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.status_code == 500


def test_it_maps_an_overloaded_503_to_overloaded(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.overloaded())
    assert error_of(run(adapter)).kind is ErrorKind.OVERLOADED


def test_it_maps_a_plain_503_to_unavailable(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.error(503, "openai-error-500.json"))
    assert error_of(run(adapter)).kind is ErrorKind.UNAVAILABLE


def test_it_maps_an_html_502_by_its_status(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.html_bad_gateway())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.status_code == 502
    assert "<html>" not in error.message


def test_it_maps_408_to_timeout(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(Reply(status=408, body=b""))
    assert error_of(run(adapter)).kind is ErrorKind.TIMEOUT


def test_it_times_out_when_the_first_byte_is_late(
    fake: FakeOpenAI, upstream: tuple[FakeOpenAI, str]
) -> None:
    fake.queue(FakeOpenAI.slow_first_byte(0.6))
    events = run(make_adapter(upstream[1], timeout_seconds=0.15))
    assert error_of(events).kind is ErrorKind.TIMEOUT
    assert usage_of(events).estimated


def test_it_reports_a_cut_connection_after_the_text_that_arrived(
    fake: FakeOpenAI, adapter: OpenAICompatAdapter
) -> None:
    fake.queue(FakeOpenAI.cut_mid_stream())
    events = run(adapter)
    assert text_of(events) == "Hello!"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE
    usage = usage_of(events)
    assert usage.estimated
    assert usage.output_tokens > 0


def test_it_reports_a_malformed_chunk_as_unavailable(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.malformed_chunk(chunk_size=9))
    events = run(adapter)
    assert text_of(events) == "Hello!"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE
    assert usage_of(events).estimated


def test_it_maps_an_error_event_inside_the_stream(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    fake.queue(FakeOpenAI.midstream_error(chunk_size=17))
    events = run(adapter)
    assert text_of(events) == "Hello!"
    error = error_of(events)
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.message == "The server had an error while processing your request. Sorry about that!"
    assert error.provider_code == "server_error"
    assert usage_of(events).estimated


def test_it_maps_a_rate_limit_event_inside_the_stream(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    body = wire("openai-chat-stream.sse").split(b"\n\n")[0] + b"\n\n" + b"data: " + (
        b'{"error":{"message":"Rate limit reached. Please try again in 20ms.",'
        b'"type":"requests","param":null,"code":"rate_limit_exceeded"}}\n\n'
    )
    fake.queue(Reply(headers=FakeOpenAI.stream().headers, body=body))
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == pytest.approx(0.02)


def test_it_reports_a_chunk_of_the_wrong_shape_as_unavailable(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    first_event = wire("openai-chat-stream.sse").split(b"\n\n")[0]
    fake.queue(Reply(headers=FakeOpenAI.stream().headers, body=first_event + b'\n\ndata: {"choices":"oops"}\n\n'))
    assert error_of(run(adapter)).kind is ErrorKind.UNAVAILABLE


def test_it_reads_the_text_parts_of_a_list_content(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    completion = json.loads(wire("openai-chat-response.json"))
    completion["choices"][0]["message"]["content"] = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "The user greets me."}]},
        {"type": "text", "text": "Hello!"},
    ]
    fake.queue(Reply(headers=FakeOpenAI.completion().headers, body=json.dumps(completion).encode()))
    assert text_of(run(adapter, ChatRequest(messages=HELLO.messages, stream=False))) == "Hello!"


def test_it_finishes_a_stream_that_closes_after_the_finish_chunk(
    fake: FakeOpenAI, adapter: OpenAICompatAdapter
) -> None:
    recorded = wire("openai-chat-stream.sse")
    without_usage = recorded[: recorded.rindex(b"data: ", 0, recorded.index(b'"choices":[]'))]
    fake.queue(Reply(headers=FakeOpenAI.stream().headers, body=without_usage))
    events = run(adapter)
    assert text_of(events) == "Hello! How can I assist you today?"
    assert events[-1] == Finish(FinishReason.STOP)
    assert usage_of(events).estimated


def test_it_reports_a_stream_that_closes_before_finishing(fake: FakeOpenAI, adapter: OpenAICompatAdapter) -> None:
    recorded = wire("openai-chat-stream.sse")
    fake.queue(Reply(headers=FakeOpenAI.stream().headers, body=recorded[: recorded.index(b'"finish_reason":"stop"')]))
    events = run(adapter)
    assert error_of(events).kind is ErrorKind.UNAVAILABLE
    assert text_of(events) == "Hello! How can I assist you today?"


def test_it_reports_a_refused_connection_as_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events = run(make_adapter(f"http://127.0.0.1:{port}"))
    assert error_of(events).kind is ErrorKind.UNAVAILABLE


def test_it_lists_models_on_the_fake(upstream: tuple[FakeOpenAI, str], fake: FakeOpenAI) -> None:
    response = httpx.get(f"{upstream[1]}/v1/models")
    assert response.json()["data"][0]["id"] == "model-id-0"


def test_the_registry_builds_it_for_kind_openai() -> None:
    assert isinstance(adapter_for(make_adapter("http://127.0.0.1:9").config), OpenAICompatAdapter)
