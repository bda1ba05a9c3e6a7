from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Iterator

import pytest

from routing.providers.errors import ErrorKind
from routing.providers.gemini import GeminiAdapter
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
from tests.fakes import gemini as fakes
from tests.fakes.gemini import FakeGemini
from tests.fakes.server import Reply, serve, wire
from tests.routing.providers.stream_checks import assert_contract, collect, error_of, text_of, usage_of

API_KEY = "gemini-test-key"
HELLO = ChatRequest(messages=(Message(role="user", content="What is the capital of Wyoming?"),))
WEATHER_TOOL = ToolSpec(
    name="get_weather",
    description="Get the current weather in a given location",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[FakeGemini, str]]:
    fake = FakeGemini()
    with serve(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def fake(upstream: tuple[FakeGemini, str]) -> FakeGemini:
    upstream[0].reset()
    return upstream[0]


@pytest.fixture
def config(upstream: tuple[FakeGemini, str]) -> ModelConfig:
    return ModelConfig(
        provider_name="gemini",
        provider_kind="gemini",
        model_id="gemini-flash",
        upstream_name="gemini-2.0-flash",
        base_url=f"{upstream[1]}/v1beta",
        api_key=API_KEY,
        timeout_seconds=5.0,
    )


@pytest.fixture
def adapter(config: ModelConfig) -> GeminiAdapter:
    return GeminiAdapter(config)


def run(adapter: GeminiAdapter, request: ChatRequest = HELLO) -> list[Event]:
    """All events of one call, after checking the stream contract."""
    events = collect(adapter, request)
    assert_contract(events)
    return events


def test_it_streams_the_recorded_text_usage_and_finish(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    events = run(adapter)

    assert text_of(events) == "The capital of Wyoming is **Cheyenne**.\n"
    assert usage_of(events) == Usage(input_tokens=7, output_tokens=10, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)


@pytest.mark.parametrize("chunk_size", [1, 5, 17])
def test_it_copes_with_crlf_split_at_odd_byte_boundaries(
    fake: FakeGemini, adapter: GeminiAdapter, chunk_size: int
) -> None:
    fake.queue(fakes.stream(chunk_size=chunk_size))

    events = run(adapter)

    assert text_of(events) == "The capital of Wyoming is **Cheyenne**.\n"
    assert usage_of(events) == Usage(input_tokens=7, output_tokens=10)


def test_it_sends_the_stream_request_with_its_key_header(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    """topP and seed are mapped; the penalties, which some Gemini models refuse, are left out."""
    request = ChatRequest(
        messages=(
            Message(role="user", content="Hello"),
            Message(role="assistant", content="Great to meet you. What would you like to know?"),
            Message(role="user", content="I have two dogs in my house. How many paws are in my house?"),
        ),
        system="You are a cat. Your name is Neko.",
        temperature=1.0,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        sampling_seed=42,
        max_tokens=800,
        stop=("Title",),
        user="ignored-by-gemini",
    )

    run(adapter, request)

    sent = fake.requests[0]
    assert (sent.method, sent.path, sent.query) == (
        "POST",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        "alt=sse",
    )
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert API_KEY not in sent.query
    assert sent.json() == {
        "systemInstruction": {"parts": [{"text": "You are a cat. Your name is Neko."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Great to meet you. What would you like to know?"}]},
            {"role": "user", "parts": [{"text": "I have two dogs in my house. How many paws are in my house?"}]},
        ],
        "generationConfig": {
            "temperature": 1.0,
            "topP": 0.9,
            "seed": 42,
            "maxOutputTokens": 800,
            "stopSequences": ["Title"],
        },
    }


def test_it_translates_tools_tool_calls_and_tool_results(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    request = ChatRequest(
        messages=(
            Message(role="user", content="Weather in Paris and Rome?"),
            Message(
                role="assistant",
                tool_calls=(
                    ToolCall(id="call_a", name="get_weather", arguments='{"location": "Paris"}'),
                    ToolCall(id="call_b", name="get_forecast", arguments='{"location": "Rome"}'),
                ),
            ),
            Message(role="tool", tool_call_id="call_a", content='{"celsius": 18}'),
            Message(role="tool", tool_call_id="call_b", content="clear skies"),
        ),
        tools=(WEATHER_TOOL, ToolSpec(name="now")),
        tool_choice=ToolChoice(mode="auto"),
    )

    run(adapter, request)

    body = fake.requests[0].json()
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Get the current weather in a given location",
                    "parametersJsonSchema": WEATHER_TOOL.parameters,
                },
                {"name": "now"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                {"functionCall": {"name": "get_forecast", "args": {"location": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"content": {"celsius": 18}}}},
                {"functionResponse": {"name": "get_forecast", "response": {"content": "clear skies"}}},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (ToolChoice(mode="none"), {"mode": "NONE"}),
        (ToolChoice(mode="required"), {"mode": "ANY"}),
        (ToolChoice(mode="function", name="get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_it_maps_tool_choice(
    fake: FakeGemini, adapter: GeminiAdapter, choice: ToolChoice, expected: dict[str, object]
) -> None:
    run(adapter, dataclasses.replace(HELLO, tools=(WEATHER_TOOL,), tool_choice=choice))

    assert fake.requests[0].json()["toolConfig"] == {"functionCallingConfig": expected}


def test_it_sends_images_inline_or_by_uri(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    message = Message(
        role="user",
        content="What is in these?",
        images=("data:image/png;base64,iVBORw0KGgo=", "https://example.com/photos/cat.webp"),
    )

    run(adapter, ChatRequest(messages=(message,)))

    assert fake.requests[0].json()["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/photos/cat.webp", "mimeType": "image/webp"}},
        {"text": "What is in these?"},
    ]


def test_it_asks_for_json_with_the_schema(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}

    run(adapter, dataclasses.replace(HELLO, response_format=ResponseFormat(type="json_schema", schema=schema)))
    run(adapter, dataclasses.replace(HELLO, response_format=ResponseFormat(type="json_object")))

    assert fake.requests[0].json()["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert fake.requests[1].json()["generationConfig"] == {"responseMimeType": "application/json"}


def test_it_reads_a_non_streaming_response(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    events = run(adapter, dataclasses.replace(HELLO, stream=False))

    sent = fake.requests[0]
    assert (sent.path, sent.query) == ("/v1beta/models/gemini-2.0-flash:generateContent", "")
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert text_of(events) == (
        "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n"
    )
    assert usage_of(events) == Usage(input_tokens=7, output_tokens=22, estimated=False)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_leaves_thoughts_out_of_the_text_but_counts_them_as_output(
    fake: FakeGemini, adapter: GeminiAdapter
) -> None:
    fake.queue(fakes.thinking_stream(chunk_size=64))

    events = run(adapter)

    assert text_of(events) == (
        "The sky is blue because tiny gas molecules in Earth's atmosphere scatter blue light from the sun more "
        "efficiently than other colors. Blue light has shorter, smaller wavelengths, causing it to be scattered "
        "in all directions, making the sky appear blue to our eyes."
    )
    assert usage_of(events) == Usage(input_tokens=10, output_tokens=48 + 540)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_streams_a_function_call_and_finishes_with_tool_calls(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    fake.queue(fakes.function_call_stream())

    events = run(adapter, dataclasses.replace(HELLO, tools=(WEATHER_TOOL,)))

    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(calls) == 1
    assert (calls[0].index, calls[0].name) == (0, "get_weather")
    assert calls[0].id and calls[0].id.startswith("call_")
    assert json.loads(calls[0].arguments) == {"location": "Paris"}
    assert text_of(events) == "Let me look that up."
    assert usage_of(events) == Usage(input_tokens=31, output_tokens=12)
    assert events[-1] == Finish(FinishReason.TOOL_CALLS)


def test_it_finishes_a_safety_stop_as_content_filter(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    fake.queue(fakes.safety_response())

    events = run(adapter, dataclasses.replace(HELLO, stream=False))

    assert text_of(events) == "Safety error incoming in 5, 4, 3, 2..."
    assert usage_of(events) == Usage(input_tokens=7, output_tokens=20)
    assert events[-1] == Finish(FinishReason.CONTENT_FILTER)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("BLOCKLIST", FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
        ("SPII", FinishReason.CONTENT_FILTER),
        ("IMAGE_SAFETY", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.STOP),
        ("OTHER", FinishReason.STOP),
    ],
)
def test_it_maps_finish_reasons(fake: FakeGemini, adapter: GeminiAdapter, reason: str, finish: FinishReason) -> None:
    body = wire(fakes.RECORDED_STREAM).replace(b'"finishReason": "STOP"', f'"finishReason": "{reason}"'.encode())
    fake.queue(fakes.stream_of(body))

    assert run(adapter)[-1] == Finish(finish)


def test_it_reports_a_blocked_prompt_as_content_filtered(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    fake.queue(fakes.blocked_prompt())

    error = error_of(run(adapter))

    assert error.kind is ErrorKind.CONTENT_FILTERED
    assert error.provider_code == "PROHIBITED_CONTENT"


@pytest.mark.parametrize(
    ("reply", "kind", "status_code"),
    [
        (fakes.api_key_invalid, ErrorKind.AUTH, 400),
        (fakes.invalid_argument, ErrorKind.BAD_REQUEST, 400),
        (fakes.context_too_long, ErrorKind.CONTEXT_TOO_LONG, 400),
        (fakes.permission_denied, ErrorKind.AUTH, 403),
        (fakes.not_found, ErrorKind.BAD_REQUEST, 404),
        (fakes.rate_limited, ErrorKind.RATE_LIMITED, 429),
        (fakes.internal_error, ErrorKind.UNAVAILABLE, 500),
        (fakes.overloaded, ErrorKind.OVERLOADED, 503),
        (fakes.deadline_exceeded, ErrorKind.TIMEOUT, 504),
        (fakes.bad_gateway_html, ErrorKind.UNAVAILABLE, 502),
    ],
)
def test_it_maps_error_responses(
    fake: FakeGemini, adapter: GeminiAdapter, reply: Callable[[], Reply], kind: ErrorKind, status_code: int
) -> None:
    fake.queue(reply())

    events = run(adapter)

    error = error_of(events)
    assert (error.kind, error.status_code) == (kind, status_code)
    assert usage_of(events).estimated is True
    assert not any(isinstance(e, TextDelta) for e in events)


def test_it_names_the_reason_of_an_invalid_key(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    fake.queue(fakes.api_key_invalid())

    error = error_of(run(adapter, dataclasses.replace(HELLO, stream=False)))

    assert error.provider_code == "API_KEY_INVALID"
    assert error.message == "API key not valid. Please pass a valid API key."


def test_it_takes_the_retry_delay_of_a_429_from_its_body(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    fake.queue(fakes.rate_limited())

    error = error_of(run(adapter))

    assert error.retry_after == 26


def test_it_takes_the_retry_delay_of_a_429_from_its_headers_without_details(
    fake: FakeGemini, adapter: GeminiAdapter
) -> None:
    fake.queue(fakes.rate_limited_without_details())

    error = error_of(run(adapter))

    assert (error.kind, error.retry_after) == (ErrorKind.RATE_LIMITED, 7)


@pytest.mark.parametrize("chunk_size", [0, 9])
def test_it_reports_a_vertex_style_error_after_the_text_that_arrived(
    fake: FakeGemini, adapter: GeminiAdapter, chunk_size: int
) -> None:
    fake.queue(fakes.vertex_error_mid_stream(chunk_size=chunk_size))

    events = run(adapter)

    assert text_of(events) == "First Second "
    assert usage_of(events).estimated is True
    error = error_of(events)
    assert (error.kind, error.status_code, error.message) == (
        ErrorKind.UNAVAILABLE,
        499,
        "The operation was cancelled.",
    )


def test_it_reports_an_error_on_a_data_line_after_the_text_that_arrived(
    fake: FakeGemini, adapter: GeminiAdapter
) -> None:
    fake.queue(fakes.data_error_mid_stream())

    events = run(adapter)

    assert text_of(events) == "The"
    assert usage_of(events).estimated is True
    assert error_of(events).kind is ErrorKind.OVERLOADED


def test_it_times_out_when_the_first_byte_is_too_slow(
    fake: FakeGemini, config: ModelConfig
) -> None:
    fake.queue(fakes.slow_first_byte(0.5))
    adapter = GeminiAdapter(dataclasses.replace(config, timeout_seconds=0.1))

    assert error_of(run(adapter)).kind is ErrorKind.TIMEOUT


def test_it_reports_unavailable_when_the_connection_is_cut_mid_stream(
    fake: FakeGemini, adapter: GeminiAdapter
) -> None:
    fake.queue(fakes.cut_mid_stream())

    events = run(adapter)

    assert text_of(events) == "The"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE
    usage = usage_of(events)
    assert (usage.estimated, usage.output_tokens) == (True, 1)


def test_it_reports_unavailable_when_the_stream_ends_without_a_finish_reason(
    fake: FakeGemini, adapter: GeminiAdapter
) -> None:
    body = wire(fakes.RECORDED_STREAM)
    fake.queue(fakes.stream_of(body[: body.index(b"data:", 10)]))

    events = run(adapter)

    assert text_of(events) == "The"
    assert error_of(events).kind is ErrorKind.UNAVAILABLE


def test_it_reports_unavailable_for_a_malformed_chunk(fake: FakeGemini, adapter: GeminiAdapter) -> None:
    fake.queue(fakes.malformed_chunk())

    events = run(adapter)

    assert text_of(events) == "The"
    error = error_of(events)
    assert (error.kind, error.message) == (ErrorKind.UNAVAILABLE, "the provider sent a malformed chunk")


def test_it_reports_unavailable_when_the_connection_is_refused(config: ModelConfig) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    adapter = GeminiAdapter(dataclasses.replace(config, base_url=f"http://127.0.0.1:{closed_port}/v1beta"))

    assert error_of(run(adapter)).kind is ErrorKind.UNAVAILABLE


def test_the_registry_builds_it_for_kind_gemini(config: ModelConfig) -> None:
    assert isinstance(adapter_for(config), GeminiAdapter)
