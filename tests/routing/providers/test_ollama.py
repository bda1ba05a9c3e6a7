from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from routing.providers.errors import ErrorKind
from routing.providers.ollama import OllamaAdapter
from routing.providers.registry import adapter_for
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    ModelConfig,
    ResponseFormat,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.fakes.ollama import FakeOllama
from tests.fakes.server import Reply, serve
from tests.routing.providers.stream_checks import assert_contract, collect, error_of, text_of, usage_of

SKY = ChatRequest(
    messages=(Message(role="user", content="why is the sky blue?"),),
    system="You are a helpful assistant.",
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeOllama, str]]:
    fake = FakeOllama()
    with serve(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def fake(upstream: tuple[FakeOllama, str]) -> Iterator[FakeOllama]:
    upstream[0].reset()
    yield upstream[0]
    upstream[0].reset()


def make_adapter(base_url: str, **overrides: Any) -> OllamaAdapter:
    settings: dict[str, Any] = {
        "provider_name": "Ollama",
        "provider_kind": "ollama",
        "model_id": "llama3.2",
        "upstream_name": "llama3.2",
        "base_url": base_url,
        "timeout_seconds": 2.0,
        "connect_timeout_seconds": 1.0,
        **overrides,
    }
    return OllamaAdapter(ModelConfig(**settings))


@pytest.fixture
def adapter(upstream: tuple[FakeOllama, str]) -> OllamaAdapter:
    return make_adapter(upstream[1])


def run(adapter: OllamaAdapter, request: ChatRequest = SKY) -> list[Event]:
    events = collect(adapter, request)
    assert_contract(events)
    return events


@pytest.mark.parametrize("chunk_size", [0, 1, 7, 100])
def test_it_streams_the_recorded_text_usage_and_finish(
    fake: FakeOllama, adapter: OllamaAdapter, chunk_size: int
) -> None:
    fake.queue(FakeOllama.stream(chunk_size=chunk_size))
    events = run(adapter)
    assert text_of(events) == "The sky is blue."
    assert usage_of(events) == Usage(input_tokens=26, output_tokens=282, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_parses_a_non_streaming_answer(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    events = run(adapter, ChatRequest(messages=SKY.messages, stream=False))
    assert text_of(events) == "Hello! How are you today?"
    assert usage_of(events) == Usage(input_tokens=26, output_tokens=298, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)
    assert fake.requests[0].json()["stream"] is False


def test_it_counts_an_absent_prompt_eval_count_as_a_reported_zero(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.cached_prompt_stream())
    assert usage_of(run(adapter)) == Usage(input_tokens=0, output_tokens=282, estimated=False)


@pytest.mark.parametrize("chunk_size", [0, 11])
def test_it_streams_tool_calls_with_json_string_arguments(
    fake: FakeOllama, adapter: OllamaAdapter, chunk_size: int
) -> None:
    fake.queue(FakeOllama.tool_call_stream(chunk_size=chunk_size))
    events = run(adapter)
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert deltas == [ToolCallDelta(index=0, id="call_0", name="get_current_weather", arguments=deltas[0].arguments)]
    assert json.loads(deltas[0].arguments) == {"format": "celsius", "location": "Paris, FR"}
    assert usage_of(events) == Usage(input_tokens=122, output_tokens=33)
    assert events[-1] == Finish(FinishReason.TOOL_CALLS)


def test_it_maps_a_length_finish(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    body = FakeOllama.stream().body.replace(b'"done_reason":"stop"', b'"done_reason":"length"')
    fake.queue(FakeOllama.stream(body))
    assert run(adapter)[-1] == Finish(FinishReason.LENGTH)


def test_it_sends_the_translated_request(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    weather = ToolSpec(
        name="get_current_weather",
        description="Get the current weather for a location",
        parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    )
    request = ChatRequest(
        system="You are a helpful assistant.",
        messages=(
            Message(role="user", content="What is in this picture?", images=("data:image/png;base64,iVBORw0KGgo=",)),
            Message(
                role="assistant",
                tool_calls=(ToolCall(id="call_0", name="get_current_weather", arguments='{"location":"Paris"}'),),
            ),
            # As OpenAI clients send it: the call's id, not the tool's name, which Ollama wants.
            Message(role="tool", content="21 degrees", tool_call_id="call_0"),
            Message(role="user", content="And this one?", images=("iVBORw0KGgo=",)),
        ),
        temperature=0.7,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        sampling_seed=42,
        max_tokens=256,
        stop=("\n\n",),
        tools=(weather,),
        response_format=ResponseFormat(type="json_object"),
    )
    run(adapter, request)
    sent = fake.requests[0]
    assert sent.method == "POST"
    assert sent.path == "/api/chat"
    assert "authorization" not in sent.headers
    assert sent.json() == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is in this picture?", "images": ["iVBORw0KGgo="]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"location": "Paris"}}}],
            },
            {"role": "tool", "content": "21 degrees", "tool_name": "get_current_weather"},
            {"role": "user", "content": "And this one?", "images": ["iVBORw0KGgo="]},
        ],
        "stream": True,
        "options": {
            "temperature": 0.7,
            "top_p": 0.9,
            "frequency_penalty": 0.5,
            "presence_penalty": -0.5,
            "seed": 42,
            "num_predict": 256,
            "stop": ["\n\n"],
        },
        "format": "json",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "description": "Get the current weather for a location",
                    "parameters": weather.parameters,
                },
            }
        ],
    }


def test_it_sends_a_json_schema_as_the_format(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    run(adapter, ChatRequest(messages=SKY.messages, response_format=ResponseFormat(type="json_schema", schema=schema)))
    assert fake.requests[0].json()["format"] == schema


def test_it_sends_a_bearer_key_when_one_is_configured(
    fake: FakeOllama, upstream: tuple[FakeOllama, str]
) -> None:
    run(make_adapter(upstream[1], api_key="ollama-cloud-key"))
    assert fake.requests[0].headers["authorization"] == "Bearer ollama-cloud-key"


def test_it_sends_no_tools_when_tool_choice_is_none(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    request = ChatRequest(messages=SKY.messages, tools=(ToolSpec(name="f"),), tool_choice=ToolChoice(mode="none"))
    run(adapter, request)
    assert "tools" not in fake.requests[0].json()


def test_it_sends_only_the_chosen_tool(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    request = ChatRequest(
        messages=SKY.messages,
        tools=(ToolSpec(name="f"), ToolSpec(name="g")),
        tool_choice=ToolChoice(mode="function", name="g"),
    )
    run(adapter, request)
    assert fake.requests[0].json()["tools"] == [{"type": "function", "function": {"name": "g"}}]


def test_it_refuses_an_image_url_without_calling_ollama(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    request = ChatRequest(messages=(Message(role="user", content="?", images=("https://example.com/cat.png",)),))
    error = error_of(run(adapter, request))
    assert error.kind is ErrorKind.BAD_REQUEST
    assert fake.requests == []


def test_it_maps_a_missing_model_to_bad_request(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.model_not_found())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.BAD_REQUEST
    assert error.status_code == 404
    assert error.message == 'model "llama3.2" not found, try pulling it first'


def test_it_maps_a_context_error_to_context_too_long(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.context_too_long())
    assert error_of(run(adapter)).kind is ErrorKind.CONTEXT_TOO_LONG


def test_it_maps_another_400_to_bad_request(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.error(400, b'{"error":"registry.ollama.ai/library/llama3.2:latest does not support tools"}'))
    assert error_of(run(adapter)).kind is ErrorKind.BAD_REQUEST


def test_it_maps_429_to_rate_limited_with_retry_after(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.rate_limited(retry_after="7"))
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == 7.0


def test_it_maps_503_to_overloaded(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.overloaded())
    assert error_of(run(adapter)).kind is ErrorKind.OVERLOADED


def test_it_maps_500_to_unavailable(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.server_error())
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.message == "the model failed to generate a response"


def test_it_maps_a_502_without_a_json_body_by_its_status(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(Reply(status=502, headers=[(b"content-type", b"text/plain")], body=b"Bad Gateway"))
    error = error_of(run(adapter))
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.status_code == 502


def test_it_maps_the_recorded_midstream_error_to_unavailable(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.midstream_error(chunk_size=13))
    events = run(adapter)
    error = error_of(events)
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.message == "an error was encountered while running the model"
    assert usage_of(events).estimated


def test_it_keeps_the_text_before_a_midstream_error(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.chat_midstream_error(lines=3))
    events = run(adapter)
    assert text_of(events) == "The sky is"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE


def test_it_times_out_when_the_first_byte_is_late(
    fake: FakeOllama, upstream: tuple[FakeOllama, str]
) -> None:
    fake.queue(FakeOllama.slow_first_byte(0.6))
    events = run(make_adapter(upstream[1], timeout_seconds=0.15))
    assert error_of(events).kind is ErrorKind.TIMEOUT


def test_it_reports_a_cut_connection_after_the_text_that_arrived(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.cut_mid_stream(lines=2))
    events = run(adapter)
    assert text_of(events) == "The sky"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE
    usage = usage_of(events)
    assert usage.estimated
    assert usage.output_tokens > 0


def test_it_reports_a_malformed_line_as_unavailable(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.malformed_chunk(lines=2, chunk_size=9))
    events = run(adapter)
    assert text_of(events) == "The sky"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE


def test_it_reports_a_line_of_the_wrong_shape_as_unavailable(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    fake.queue(FakeOllama.stream(b'{"model":"llama3.2","message":"oops","done":false}\n'))
    assert error_of(run(adapter)).kind is ErrorKind.UNAVAILABLE


def test_it_reports_a_stream_without_a_done_line(fake: FakeOllama, adapter: OllamaAdapter) -> None:
    lines = FakeOllama.stream().body.splitlines(keepends=True)
    fake.queue(FakeOllama.stream(b"".join(lines[:-1])))
    events = run(adapter)
    assert text_of(events) == "The sky is blue."
    assert error_of(events).kind is ErrorKind.UNAVAILABLE


def test_it_reports_a_refused_connection_as_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events = run(make_adapter(f"http://127.0.0.1:{port}"))
    assert error_of(events).kind is ErrorKind.UNAVAILABLE


def test_the_registry_builds_it_for_kind_ollama() -> None:
    assert isinstance(adapter_for(make_adapter("http://127.0.0.1:9").config), OllamaAdapter)
