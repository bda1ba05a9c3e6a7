"""The provider kinds' profiles for the adapter contract suite (test_contract.py).

A profile says, for one provider kind, how to build its adapter, how to make
the next call play out each scenario of the contract (a plain stream, a
non-streamed answer, an error answer, a failure in the middle of a stream, a
tool call, a slow first byte…) and what the adapter must turn it into. A
scenario that a kind cannot play is left empty in its profile, and the
contract tests that need it are not generated for that kind, as Django's
suite leaves out a test for a database backend that lacks the feature.

A Backend is a profile with its fake upstream running (tests/fakes/): the
contract suite and each provider's own tests use it to build adapters, queue
replies and read what was sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing import tokens
from routing.providers.anthropic import AnthropicAdapter
from routing.providers.base import ProviderAdapter
from routing.providers.errors import ErrorKind
from routing.providers.gemini import GeminiAdapter
from routing.providers.ollama import OllamaAdapter
from routing.providers.openai_compat import OpenAICompatAdapter
from routing.providers.simulated import SimulatedAdapter
from routing.providers.types import (
    ChatRequest,
    Event,
    FinishReason,
    Message,
    ModelConfig,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from tests.fakes import anthropic as anthropic_fakes
from tests.fakes import gemini as gemini_fakes
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeUpstream, RecordedRequest, Reply, serve, wire
from tests.routing.providers.stream_checks import assert_contract, collect

# Long enough that a stream still open after it would fail the test, not pass it late.
PAUSE_SECONDS = 10.0
# A slow first byte, and a read timeout well below it.
FIRST_BYTE_DELAY = 0.6
SHORT_TIMEOUT = 0.15

# The request of the request-body tests, the same for every kind: one user
# turn, a system prompt, and every sampling parameter a client may set.
PLAIN = ChatRequest(messages=(Message(role="user", content="Hello!"),))
SAMPLED = dataclasses.replace(
    PLAIN,
    system="You are a helpful assistant.",
    temperature=0.7,
    top_p=0.9,
    frequency_penalty=0.5,
    presence_penalty=-0.5,
    sampling_seed=42,
    max_tokens=256,
    stop=("\n\n",),
    user="user-42",
)

WEATHER_TOOL = ToolSpec(
    name="get_weather",
    description="Get the current weather in a given location",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


class _Counted:
    """Usage that the provider counts itself with routing.tokens, as the simulated provider does."""

    def __repr__(self) -> str:
        return "COUNTED"


COUNTED = _Counted()


@dataclass(frozen=True)
class Setup:
    """How the next call plays out: a reply queued on the kind's fake, and ModelConfig fields to change.

    `reply` takes the Reply options (chunk_size, …) of tests/fakes/server.py.
    `config["options"]` is merged into the profile's options.
    """

    reply: Callable[..., Reply] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """A tool call the adapter must yield. `id` may end in `*` for ids the adapter makes up."""

    id: str
    name: str
    # The JSON string the argument fragments join into; None: any JSON object (the provider composes it).
    arguments: str | None
    # True: one delta carries the id, the name and all the arguments. False: the
    # first carries only the id and the name, and argument fragments follow.
    whole: bool


@dataclass(frozen=True)
class Answer:
    """A call that succeeds, and the events the adapter must yield for it."""

    name: str
    setup: Setup
    request: ChatRequest
    # None: some text that is not fixed (the simulated provider composes it).
    text: str | None
    usage: Usage | _Counted
    finish: FinishReason = FinishReason.STOP
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True)
class Failure:
    """A call that fails, the text that arrives before the failure and the error it must end in.

    `text` None: a non-empty part of the whole answer, not all of it. `message`
    None: not checked.
    """

    name: str
    setup: Setup
    kind: ErrorKind
    text: str | None = ""
    status_code: int | None = None
    retry_after: float | None = None
    provider_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Profile:
    kind: str
    adapter_class: type[ProviderAdapter]
    # ModelConfig fields, but for base_url and api_key.
    config: Mapping[str, Any]
    api_key: str
    # The question of most calls, and its answer as a stream and not streamed.
    question: ChatRequest
    answer: Answer
    completion: Answer
    # Errors before the first token.
    refusals: tuple[Failure, ...]
    timeout: Failure
    tool_answers: tuple[Answer, ...] = ()
    # Answers whose usage has parts priced apart: cached input, cache writes, reasoning.
    usage_details: tuple[Answer, ...] = ()
    # What the adapter reports when a stream breaks after some text.
    cut: Failure | None = None
    error_events: tuple[Failure, ...] = ()
    malformed_chunk: Failure | None = None
    wrong_shape: Failure | None = None
    unfinished: Failure | None = None
    # A non-streamed answer of status 200 whose body is the provider's error.
    error_in_a_200_answer: Failure | None = None
    # The provider's finish reasons, and the answer with one of them in place of its own.
    finish_reasons: tuple[tuple[str, FinishReason], ...] = ()
    with_finish_reason: Callable[[str], Reply] | None = None
    # HTTP kinds: the fake, and the path of the API under its root URL.
    fake_class: type[FakeUpstream] | None = None
    base_path: str = ""
    # The request the adapter sends: (path, query) when streaming and not.
    target: tuple[str, str] = ("", "")
    unstreamed_target: tuple[str, str] = ("", "")
    # The body sent for PLAIN and SAMPLED when streaming; `unstreamed` turns one into the body sent without a stream.
    plain_body: Mapping[str, Any] | None = None
    sampled_body: Mapping[str, Any] | None = None
    unstreamed: Callable[[dict[str, Any]], dict[str, Any]] = dict
    # The header that carries the key, and its value with "{key}" for the key.
    key_header: tuple[str, str] = ("", "")
    # Whether a call without a key sends no key header at all (local servers need none).
    key_optional: bool = False
    # The plain stream, its first text sent at once and the rest after PAUSE_SECONDS.
    paced_stream: Callable[[], Reply] | None = None


def _sse_split(body: bytes, marker: bytes, separator: bytes) -> list[bytes]:
    """`body` in two pieces: up to the end of the event that holds `marker`, and the rest."""
    end = body.index(separator, body.index(marker)) + len(separator)
    return [body[:end], body[end:]]


def _paced(reply: Callable[[], Reply], marker: bytes, separator: bytes) -> Callable[[], Reply]:
    def paced() -> Reply:
        plain = reply()
        return dataclasses.replace(plain, pieces=_sse_split(plain.body, marker, separator), chunk_delay=PAUSE_SECONDS)

    return paced


def _streamed_with(reply: Callable[..., Reply], old: bytes, new: bytes) -> Reply:
    """The reply's recorded body with `old` (which it holds once) replaced by `new`."""
    plain = reply()
    assert plain.body.count(old) == 1, old
    return dataclasses.replace(plain, body=plain.body.replace(old, new))


def _with_body(reply: Callable[[], Reply], name: str) -> Callable[[], Reply]:
    """The reply, with the recorded body `name` in place of its own."""
    return lambda: dataclasses.replace(reply(), body=wire(name))


def _json(status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Callable[[], Reply]:
    return lambda: Reply(status=status, headers=[(b"content-type", b"application/json"), *(headers or [])], body=body)


# OpenAI and every server that copies its wire format.

_OPENAI_KEY = "sk-test-7f3a9c"
_OPENAI_STREAM = wire("openai-chat-stream.sse")
_OPENAI_FIRST_EVENT = _OPENAI_STREAM.split(b"\n\n")[0] + b"\n\n"


def _openai_rate_limited_in_ms() -> Reply:
    reply = FakeOpenAI.rate_limited(retry_after=None)
    reply.headers.append((b"retry-after-ms", b"1500"))
    return reply


def _openai_stream_of(body: bytes) -> Callable[[], Reply]:
    return lambda: Reply(headers=FakeOpenAI.stream().headers, body=body)


_OPENAI_QUESTION = ChatRequest(
    messages=(Message(role="user", content="Hello!"),), system="You are a helpful assistant."
)


OPENAI = Profile(
    kind="openai",
    adapter_class=OpenAICompatAdapter,
    fake_class=FakeOpenAI,
    base_path="/v1",
    config={
        "provider_name": "OpenAI",
        "provider_kind": "openai",
        "model_id": "gpt-4o-mini",
        "upstream_name": "gpt-4o-mini",
        "timeout_seconds": 2.0,
        "connect_timeout_seconds": 1.0,
    },
    api_key=_OPENAI_KEY,
    question=_OPENAI_QUESTION,
    answer=Answer(
        "stream",
        Setup(FakeOpenAI.stream),
        _OPENAI_QUESTION,
        "Hello! How can I assist you today?",
        Usage(input_tokens=19, output_tokens=10),
    ),
    completion=Answer(
        "completion",
        Setup(FakeOpenAI.completion),
        dataclasses.replace(_OPENAI_QUESTION, stream=False),
        "Hello! How can I assist you today?",
        Usage(input_tokens=19, output_tokens=10),
    ),
    tool_answers=(
        Answer(
            "stream",
            Setup(FakeOpenAI.tool_call_stream),
            _OPENAI_QUESTION,
            "",
            Usage(input_tokens=44, output_tokens=16),
            FinishReason.TOOL_CALLS,
            (Call("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", '{"city":"New York City"}', whole=False),),
        ),
        Answer(
            "stream_in_5_byte_pieces",
            Setup(functools.partial(FakeOpenAI.tool_call_stream, chunk_size=5)),
            _OPENAI_QUESTION,
            "",
            Usage(input_tokens=44, output_tokens=16),
            FinishReason.TOOL_CALLS,
            (Call("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", '{"city":"New York City"}', whole=False),),
        ),
        Answer(
            "completion",
            Setup(functools.partial(FakeOpenAI.completion, "openai-chat-response-tool-calls.json")),
            dataclasses.replace(_OPENAI_QUESTION, stream=False),
            "",
            Usage(input_tokens=82, output_tokens=17),
            FinishReason.TOOL_CALLS,
            (Call("call_abc123", "get_current_weather", '{\n"location": "Boston, MA"\n}', whole=True),),
        ),
    ),
    usage_details=(
        Answer(
            "stream",
            Setup(FakeOpenAI.cached_stream),
            _OPENAI_QUESTION,
            "Hello! How can I assist you today?",
            Usage(input_tokens=2006, output_tokens=138, cached_input_tokens=1920, reasoning_tokens=128),
        ),
        Answer(
            "completion",
            Setup(FakeOpenAI.cached_completion),
            dataclasses.replace(_OPENAI_QUESTION, stream=False),
            "Hello! How can I assist you today?",
            Usage(input_tokens=2006, output_tokens=138, cached_input_tokens=1920, reasoning_tokens=128),
        ),
    ),
    refusals=(
        Failure(
            "rate_limited",
            Setup(FakeOpenAI.rate_limited),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=27.0,
            provider_code="rate_limit_exceeded",
        ),
        # Without the header, the delay comes from "Please try again in 26.604s." in the message.
        Failure(
            "rate_limited_without_retry_after",
            Setup(functools.partial(FakeOpenAI.rate_limited, retry_after=None)),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=26.604,
            provider_code="rate_limit_exceeded",
        ),
        Failure(
            "rate_limited_with_retry_after_ms",
            Setup(_openai_rate_limited_in_ms),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=1.5,
            provider_code="rate_limit_exceeded",
        ),
        # Out of credit: waiting does not help.
        Failure(
            "insufficient_quota",
            Setup(FakeOpenAI.insufficient_quota),
            ErrorKind.AUTH,
            status_code=429,
            provider_code="insufficient_quota",
        ),
        Failure(
            "unauthorized",
            Setup(FakeOpenAI.unauthorized),
            ErrorKind.AUTH,
            status_code=401,
            provider_code="invalid_api_key",
        ),
        # Some compatible servers echo the key they refused.
        Failure(
            "unauthorized_echoing_the_key",
            Setup(
                _json(
                    401,
                    b'{"error":{"message":"Incorrect API key provided: ' + _OPENAI_KEY.encode() + b'.",'
                    b'"type":"invalid_request_error","param":null,"code":"invalid_api_key"}}',
                )
            ),
            ErrorKind.AUTH,
            status_code=401,
            provider_code="invalid_api_key",
            message="Incorrect API key provided: [redacted].",
        ),
        Failure(
            "context_too_long",
            Setup(FakeOpenAI.context_too_long),
            ErrorKind.CONTEXT_TOO_LONG,
            status_code=400,
            provider_code="context_length_exceeded",
            message=(
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 8227 "
                "tokens. Please reduce the length of the messages."
            ),
        ),
        Failure(
            "model_not_found",
            Setup(FakeOpenAI.model_not_found),
            ErrorKind.BAD_REQUEST,
            status_code=404,
            provider_code="model_not_found",
        ),
        Failure(
            "server_error",
            Setup(FakeOpenAI.server_error),
            ErrorKind.UNAVAILABLE,
            status_code=500,
            provider_code="server_error",
        ),
        Failure(
            "overloaded",
            Setup(FakeOpenAI.overloaded),
            ErrorKind.OVERLOADED,
            status_code=503,
            provider_code="server_error",
        ),
        # A 503 that does not say "overloaded".
        Failure(
            "plain_503",
            Setup(functools.partial(FakeOpenAI.error, 503, "openai-error-500.json")),
            ErrorKind.UNAVAILABLE,
            status_code=503,
            provider_code="server_error",
        ),
        Failure(
            "html_bad_gateway",
            Setup(FakeOpenAI.html_bad_gateway),
            ErrorKind.UNAVAILABLE,
            status_code=502,
            message="the provider answered HTTP 502",
        ),
        Failure(
            "request_timeout",
            Setup(lambda: Reply(status=408, body=b"")),
            ErrorKind.TIMEOUT,
            status_code=408,
        ),
    ),
    timeout=Failure(
        "slow_first_byte",
        Setup(functools.partial(FakeOpenAI.slow_first_byte, FIRST_BYTE_DELAY), {"timeout_seconds": SHORT_TIMEOUT}),
        ErrorKind.TIMEOUT,
    ),
    cut=Failure("cut", Setup(FakeOpenAI.cut_mid_stream), ErrorKind.UNAVAILABLE, text="Hello!"),
    error_events=(
        Failure(
            "server_error",
            Setup(functools.partial(FakeOpenAI.midstream_error, chunk_size=17)),
            ErrorKind.UNAVAILABLE,
            text="Hello!",
            provider_code="server_error",
            message="The server had an error while processing your request. Sorry about that!",
        ),
        Failure(
            "rate_limited",
            Setup(
                _openai_stream_of(
                    _OPENAI_FIRST_EVENT + b"data: "
                    b'{"error":{"message":"Rate limit reached. Please try again in 20ms.",'
                    b'"type":"requests","param":null,"code":"rate_limit_exceeded"}}\n\n'
                )
            ),
            ErrorKind.RATE_LIMITED,
            retry_after=0.02,
            provider_code="rate_limit_exceeded",
        ),
    ),
    malformed_chunk=Failure(
        "malformed_chunk",
        Setup(functools.partial(FakeOpenAI.malformed_chunk, chunk_size=9)),
        ErrorKind.UNAVAILABLE,
        text="Hello!",
        message="the provider sent a malformed chunk",
    ),
    wrong_shape=Failure(
        "wrong_shape",
        Setup(_openai_stream_of(_OPENAI_FIRST_EVENT + b'data: {"choices":"oops"}\n\n')),
        ErrorKind.UNAVAILABLE,
    ),
    unfinished=Failure(
        "unfinished",
        Setup(_openai_stream_of(_OPENAI_STREAM[: _OPENAI_STREAM.index(b'"finish_reason":"stop"')])),
        ErrorKind.UNAVAILABLE,
        text="Hello! How can I assist you today?",
    ),
    error_in_a_200_answer=Failure(
        "overloaded",
        Setup(_with_body(FakeOpenAI.completion, "openai-error-503.json")),
        ErrorKind.OVERLOADED,
        provider_code="server_error",
    ),
    finish_reasons=(
        ("length", FinishReason.LENGTH),
        # Mistral's way of saying that the prompt filled the context window.
        ("model_length", FinishReason.LENGTH),
        ("tool_calls", FinishReason.TOOL_CALLS),
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("eos", FinishReason.STOP),
    ),
    with_finish_reason=lambda reason: _streamed_with(
        FakeOpenAI.stream, b'"finish_reason":"stop"', f'"finish_reason":"{reason}"'.encode()
    ),
    target=("/v1/chat/completions", ""),
    unstreamed_target=("/v1/chat/completions", ""),
    plain_body={
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello!"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    sampled_body={
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ],
        "temperature": 0.7,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "seed": 42,
        "max_tokens": 256,
        "stop": ["\n\n"],
        "user": "user-42",
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    unstreamed=lambda body: {**{k: v for k, v in body.items() if k != "stream_options"}, "stream": False},
    key_header=("authorization", "Bearer {key}"),
    key_optional=True,
    paced_stream=_paced(FakeOpenAI.stream, b'"content":"Hello"', b"\n\n"),
)


# Anthropic's Messages API.

_ANTHROPIC_STREAM = wire(anthropic_fakes.RECORDED_STREAM)


def _anthropic_stream_of(body: bytes) -> Callable[[], Reply]:
    return lambda: anthropic_fakes.stream_of(body)


def _anthropic_tool_use_message() -> Reply:
    """Composed: a Message with text and a tool_use block, whose input tokens are partly read from the cache."""
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
    return Reply(headers=anthropic_fakes.JSON_HEADERS, body=json.dumps(message).encode())


_ANTHROPIC_QUESTION = ChatRequest(messages=(Message(role="user", content="Hello, Claude"),))

ANTHROPIC = Profile(
    kind="anthropic",
    adapter_class=AnthropicAdapter,
    fake_class=FakeAnthropic,
    base_path="/v1",
    config={
        "provider_name": "anthropic",
        "provider_kind": "anthropic",
        "model_id": "claude-sonnet",
        "upstream_name": "claude-sonnet-4-5",
        "timeout_seconds": 5.0,
        "max_output_tokens": 2048,
    },
    api_key="sk-ant-test-key",
    question=_ANTHROPIC_QUESTION,
    answer=Answer(
        "stream",
        Setup(anthropic_fakes.stream),
        _ANTHROPIC_QUESTION,
        "Hello there!",
        Usage(input_tokens=11, output_tokens=6),
    ),
    completion=Answer(
        "message",
        Setup(anthropic_fakes.message),
        dataclasses.replace(_ANTHROPIC_QUESTION, stream=False),
        "Hello!",
        Usage(input_tokens=12, output_tokens=6),
    ),
    tool_answers=(
        Answer(
            "stream_in_11_byte_pieces",
            Setup(functools.partial(anthropic_fakes.tool_use_stream, chunk_size=11)),
            dataclasses.replace(_ANTHROPIC_QUESTION, tools=(WEATHER_TOOL,)),
            "I'll check the current weather in Paris for you.",
            Usage(input_tokens=377, output_tokens=65),
            FinishReason.TOOL_CALLS,
            (Call("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"location": "Paris"}', whole=False),),
        ),
        Answer(
            "message",
            Setup(_anthropic_tool_use_message),
            dataclasses.replace(_ANTHROPIC_QUESTION, stream=False, tools=(WEATHER_TOOL,)),
            "Checking.",
            # Cache reads are billed input.
            Usage(input_tokens=377, output_tokens=40, cached_input_tokens=77),
            FinishReason.TOOL_CALLS,
            (Call("toolu_1", "get_weather", '{"location": "Paris"}', whole=True),),
        ),
    ),
    # Input tokens are the fresh ones, the cache writes and the cache reads together.
    usage_details=(
        Answer(
            "stream",
            Setup(anthropic_fakes.cached_tool_use_stream),
            dataclasses.replace(_ANTHROPIC_QUESTION, tools=(WEATHER_TOOL,)),
            "I'll check the current weather in Paris for you.",
            Usage(
                input_tokens=377 + anthropic_fakes.CACHE_WRITE_TOKENS + anthropic_fakes.CACHE_READ_TOKENS,
                output_tokens=65,
                cached_input_tokens=anthropic_fakes.CACHE_READ_TOKENS,
                cache_write_tokens=anthropic_fakes.CACHE_WRITE_TOKENS,
            ),
            FinishReason.TOOL_CALLS,
            (Call("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"location": "Paris"}', whole=False),),
        ),
        Answer(
            "message",
            Setup(anthropic_fakes.cached_message),
            dataclasses.replace(_ANTHROPIC_QUESTION, stream=False),
            "Hello!",
            Usage(
                input_tokens=12 + anthropic_fakes.CACHE_WRITE_TOKENS + anthropic_fakes.CACHE_READ_TOKENS,
                output_tokens=6,
                cached_input_tokens=anthropic_fakes.CACHE_READ_TOKENS,
                cache_write_tokens=anthropic_fakes.CACHE_WRITE_TOKENS,
            ),
        ),
    ),
    refusals=(
        Failure(
            "rate_limited",
            Setup(anthropic_fakes.rate_limited),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=30.0,
            provider_code="rate_limit_error",
        ),
        Failure(
            "overloaded",
            Setup(anthropic_fakes.overloaded),
            ErrorKind.OVERLOADED,
            status_code=529,
            provider_code="overloaded_error",
        ),
        Failure(
            "server_error",
            Setup(anthropic_fakes.server_error),
            ErrorKind.UNAVAILABLE,
            status_code=500,
            provider_code="api_error",
        ),
        Failure(
            "unauthorized",
            Setup(anthropic_fakes.unauthorized),
            ErrorKind.AUTH,
            status_code=401,
            provider_code="authentication_error",
            message="invalid x-api-key",
        ),
        Failure(
            "forbidden",
            Setup(anthropic_fakes.forbidden),
            ErrorKind.AUTH,
            status_code=403,
            provider_code="permission_error",
        ),
        Failure(
            "billing_error",
            Setup(anthropic_fakes.billing_error),
            ErrorKind.AUTH,
            status_code=400,
            provider_code="billing_error",
        ),
        Failure(
            "bad_request",
            Setup(anthropic_fakes.bad_request),
            ErrorKind.BAD_REQUEST,
            status_code=400,
            provider_code="invalid_request_error",
        ),
        Failure(
            "prompt_too_long",
            Setup(anthropic_fakes.prompt_too_long),
            ErrorKind.CONTEXT_TOO_LONG,
            status_code=400,
            provider_code="invalid_request_error",
        ),
        Failure(
            "not_found",
            Setup(anthropic_fakes.not_found),
            ErrorKind.BAD_REQUEST,
            status_code=404,
            provider_code="not_found_error",
        ),
        Failure(
            "request_too_large",
            Setup(anthropic_fakes.request_too_large),
            ErrorKind.CONTEXT_TOO_LONG,
            status_code=413,
            provider_code="request_too_large",
        ),
        Failure(
            "bad_gateway_html",
            Setup(anthropic_fakes.bad_gateway_html),
            ErrorKind.UNAVAILABLE,
            status_code=502,
            message="Anthropic answered HTTP 502",
        ),
    ),
    timeout=Failure(
        "slow_first_byte",
        Setup(functools.partial(anthropic_fakes.slow_first_byte, FIRST_BYTE_DELAY), {"timeout_seconds": SHORT_TIMEOUT}),
        ErrorKind.TIMEOUT,
    ),
    cut=Failure("cut", Setup(anthropic_fakes.cut_mid_stream), ErrorKind.UNAVAILABLE, text="Hello"),
    error_events=(
        Failure(
            "overloaded",
            Setup(anthropic_fakes.overloaded_mid_stream),
            ErrorKind.OVERLOADED,
            text="Hello",
            provider_code="overloaded_error",
            message="Overloaded",
        ),
    ),
    # The broken chunk comes before the first text delta.
    malformed_chunk=Failure(
        "malformed_chunk",
        Setup(anthropic_fakes.malformed_chunk),
        ErrorKind.UNAVAILABLE,
        message="the provider sent a malformed chunk",
    ),
    wrong_shape=Failure(
        "wrong_shape",
        Setup(
            lambda: _streamed_with(
                anthropic_fakes.stream,
                b'"delta":{"type":"text_delta","text":"Hello"}',
                b'"delta":"oops"',
            )
        ),
        ErrorKind.UNAVAILABLE,
    ),
    # Every event but message_delta and message_stop: the text came, the end did not.
    unfinished=Failure(
        "unfinished",
        Setup(_anthropic_stream_of(_ANTHROPIC_STREAM[: _ANTHROPIC_STREAM.index(b"event: message_delta")])),
        ErrorKind.UNAVAILABLE,
        text="Hello there!",
    ),
    # As the same error arriving as an event of a stream.
    error_in_a_200_answer=Failure(
        "overloaded",
        Setup(_with_body(anthropic_fakes.message, "anthropic-error-529-overloaded.json")),
        ErrorKind.OVERLOADED,
        provider_code="overloaded_error",
        message="Overloaded",
    ),
    finish_reasons=(
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP),
        ("pause_turn", FinishReason.STOP),
        ("max_tokens", FinishReason.LENGTH),
        ("model_context_window_exceeded", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
    ),
    with_finish_reason=lambda reason: _streamed_with(
        anthropic_fakes.stream, b'"stop_reason":"end_turn"', f'"stop_reason":"{reason}"'.encode()
    ),
    target=("/v1/messages", ""),
    unstreamed_target=("/v1/messages", ""),
    # max_tokens is required: without the client's, the model's output limit.
    plain_body={
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "Hello!"}],
        "stream": True,
    },
    # The Messages API has top_p, but no penalties and no seed: those are left out.
    sampled_body={
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello!"}],
        "system": "You are a helpful assistant.",
        "temperature": 0.7,
        "top_p": 0.9,
        "stop_sequences": ["\n\n"],
        "metadata": {"user_id": "user-42"},
        "stream": True,
    },
    unstreamed=lambda body: {k: v for k, v in body.items() if k != "stream"},
    key_header=("x-api-key", "{key}"),
    paced_stream=_paced(anthropic_fakes.stream, b'"text":"Hello"', b"\n\n"),
)


# Google's Gemini API.

_GEMINI_STREAM = wire(gemini_fakes.RECORDED_STREAM)
_GEMINI_FIRST_CHUNK = _GEMINI_STREAM[: _GEMINI_STREAM.index(b"\r\n\r\n") + 4]
_GEMINI_QUESTION = ChatRequest(messages=(Message(role="user", content="What is the capital of Wyoming?"),))


def _gemini_stream_of(body: bytes) -> Callable[[], Reply]:
    return lambda: gemini_fakes.stream_of(body)


GEMINI = Profile(
    kind="gemini",
    adapter_class=GeminiAdapter,
    fake_class=FakeGemini,
    base_path="/v1beta",
    config={
        "provider_name": "gemini",
        "provider_kind": "gemini",
        "model_id": "gemini-flash",
        "upstream_name": "gemini-2.0-flash",
        "timeout_seconds": 5.0,
    },
    api_key="gemini-test-key",
    question=_GEMINI_QUESTION,
    answer=Answer(
        "stream",
        Setup(gemini_fakes.stream),
        _GEMINI_QUESTION,
        "The capital of Wyoming is **Cheyenne**.\n",
        Usage(input_tokens=7, output_tokens=10),
    ),
    completion=Answer(
        "response",
        Setup(gemini_fakes.response),
        dataclasses.replace(_GEMINI_QUESTION, stream=False),
        "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n",
        Usage(input_tokens=7, output_tokens=22),
    ),
    tool_answers=(
        # Gemini names no call: the adapter makes up its id. It reports STOP after a call.
        Answer(
            "stream",
            Setup(gemini_fakes.function_call_stream),
            dataclasses.replace(_GEMINI_QUESTION, tools=(WEATHER_TOOL,)),
            "Let me look that up.",
            Usage(input_tokens=31, output_tokens=12),
            FinishReason.TOOL_CALLS,
            (Call("call_*", "get_weather", '{"location": "Paris"}', whole=True),),
        ),
    ),
    # Cached tokens are a part of promptTokenCount; thoughts are output, reported apart.
    usage_details=(
        Answer(
            "stream",
            Setup(gemini_fakes.cached_thinking_stream),
            _GEMINI_QUESTION,
            "The sky is blue because tiny gas molecules in Earth's atmosphere scatter blue light from the sun more "
            "efficiently than other colors. Blue light has shorter, smaller wavelengths, causing it to be scattered "
            "in all directions, making the sky appear blue to our eyes.",
            Usage(
                input_tokens=10 + gemini_fakes.CACHED_TOKENS,
                output_tokens=48 + 540,
                cached_input_tokens=gemini_fakes.CACHED_TOKENS,
                reasoning_tokens=540,
            ),
        ),
        Answer(
            "response",
            Setup(gemini_fakes.cached_thinking_response),
            dataclasses.replace(_GEMINI_QUESTION, stream=False),
            "Google's headquarters, also known as the Googleplex, is located in **Mountain View, California**.\n",
            Usage(
                input_tokens=7 + gemini_fakes.CACHED_TOKENS,
                output_tokens=22 + gemini_fakes.RESPONSE_THOUGHTS,
                cached_input_tokens=gemini_fakes.CACHED_TOKENS,
                reasoning_tokens=gemini_fakes.RESPONSE_THOUGHTS,
            ),
        ),
    ),
    refusals=(
        Failure(
            "api_key_invalid",
            Setup(gemini_fakes.api_key_invalid),
            ErrorKind.AUTH,
            status_code=400,
            provider_code="API_KEY_INVALID",
            message="API key not valid. Please pass a valid API key.",
        ),
        Failure(
            "invalid_argument",
            Setup(gemini_fakes.invalid_argument),
            ErrorKind.BAD_REQUEST,
            status_code=400,
            provider_code="INVALID_ARGUMENT",
        ),
        Failure(
            "context_too_long",
            Setup(gemini_fakes.context_too_long),
            ErrorKind.CONTEXT_TOO_LONG,
            status_code=400,
            provider_code="INVALID_ARGUMENT",
        ),
        Failure(
            "permission_denied",
            Setup(gemini_fakes.permission_denied),
            ErrorKind.AUTH,
            status_code=403,
            provider_code="SERVICE_DISABLED",
        ),
        Failure(
            "not_found",
            Setup(gemini_fakes.not_found),
            ErrorKind.BAD_REQUEST,
            status_code=404,
            provider_code="NOT_FOUND",
        ),
        # The delay comes from the RetryInfo detail of the body.
        Failure(
            "rate_limited",
            Setup(gemini_fakes.rate_limited),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=26.0,
            provider_code="RESOURCE_EXHAUSTED",
        ),
        Failure(
            "rate_limited_without_details",
            Setup(gemini_fakes.rate_limited_without_details),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=7.0,
            provider_code="RESOURCE_EXHAUSTED",
        ),
        Failure(
            "internal_error",
            Setup(gemini_fakes.internal_error),
            ErrorKind.UNAVAILABLE,
            status_code=500,
            provider_code="INTERNAL",
        ),
        Failure(
            "overloaded",
            Setup(gemini_fakes.overloaded),
            ErrorKind.OVERLOADED,
            status_code=503,
            provider_code="UNAVAILABLE",
        ),
        Failure(
            "deadline_exceeded",
            Setup(gemini_fakes.deadline_exceeded),
            ErrorKind.TIMEOUT,
            status_code=504,
            provider_code="DEADLINE_EXCEEDED",
        ),
        Failure(
            "bad_gateway_html",
            Setup(gemini_fakes.bad_gateway_html),
            ErrorKind.UNAVAILABLE,
            status_code=502,
            message="Gemini answered HTTP 502",
        ),
    ),
    timeout=Failure(
        "slow_first_byte",
        Setup(functools.partial(gemini_fakes.slow_first_byte, FIRST_BYTE_DELAY), {"timeout_seconds": SHORT_TIMEOUT}),
        ErrorKind.TIMEOUT,
    ),
    cut=Failure("cut", Setup(gemini_fakes.cut_mid_stream), ErrorKind.UNAVAILABLE, text="The"),
    error_events=(
        # Pretty-printed JSON without a `data:` prefix, as Vertex AI sends it.
        Failure(
            "vertex_error",
            Setup(gemini_fakes.vertex_error_mid_stream),
            ErrorKind.UNAVAILABLE,
            text="First Second ",
            status_code=499,
            provider_code="CANCELLED",
            message="The operation was cancelled.",
        ),
        Failure(
            "vertex_error_in_9_byte_pieces",
            Setup(functools.partial(gemini_fakes.vertex_error_mid_stream, chunk_size=9)),
            ErrorKind.UNAVAILABLE,
            text="First Second ",
            status_code=499,
            provider_code="CANCELLED",
            message="The operation was cancelled.",
        ),
        Failure(
            "error_on_a_data_line",
            Setup(gemini_fakes.data_error_mid_stream),
            ErrorKind.OVERLOADED,
            text="The",
            status_code=503,
            provider_code="UNAVAILABLE",
        ),
    ),
    malformed_chunk=Failure(
        "malformed_chunk",
        Setup(gemini_fakes.malformed_chunk),
        ErrorKind.UNAVAILABLE,
        text="The",
        message="the provider sent a malformed chunk",
    ),
    wrong_shape=Failure(
        "wrong_shape",
        Setup(_gemini_stream_of(_GEMINI_FIRST_CHUNK + b'data: {"candidates": "oops"}\r\n\r\n')),
        ErrorKind.UNAVAILABLE,
        text="The",
    ),
    # The first chunk only: no finishReason ever came.
    unfinished=Failure("unfinished", Setup(_gemini_stream_of(_GEMINI_FIRST_CHUNK)), ErrorKind.UNAVAILABLE, text="The"),
    error_in_a_200_answer=Failure(
        "overloaded",
        Setup(_with_body(gemini_fakes.response, "gemini-error-503.json")),
        ErrorKind.OVERLOADED,
        status_code=503,
        provider_code="UNAVAILABLE",
    ),
    finish_reasons=(
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("BLOCKLIST", FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
        ("SPII", FinishReason.CONTENT_FILTER),
        ("IMAGE_SAFETY", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.STOP),
        ("OTHER", FinishReason.STOP),
    ),
    with_finish_reason=lambda reason: _streamed_with(
        gemini_fakes.stream, b'"finishReason": "STOP"', f'"finishReason": "{reason}"'.encode()
    ),
    target=("/v1beta/models/gemini-2.0-flash:streamGenerateContent", "alt=sse"),
    unstreamed_target=("/v1beta/models/gemini-2.0-flash:generateContent", ""),
    plain_body={"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]},
    # topP and seed are mapped; the penalties, which some Gemini models refuse, and `user` are left out.
    sampled_body={
        "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hello!"}]}],
        "generationConfig": {
            "temperature": 0.7,
            "topP": 0.9,
            "seed": 42,
            "maxOutputTokens": 256,
            "stopSequences": ["\n\n"],
        },
    },
    key_header=("x-goog-api-key", "{key}"),
    paced_stream=_paced(gemini_fakes.stream, b'"text": "The"', b"\r\n\r\n"),
)


# Ollama's native chat API.

_OLLAMA_STREAM_LINES = FakeOllama.stream().body.splitlines(keepends=True)
_OLLAMA_QUESTION = ChatRequest(
    messages=(Message(role="user", content="why is the sky blue?"),), system="You are a helpful assistant."
)

OLLAMA = Profile(
    kind="ollama",
    adapter_class=OllamaAdapter,
    fake_class=FakeOllama,
    config={
        "provider_name": "Ollama",
        "provider_kind": "ollama",
        "model_id": "llama3.2",
        "upstream_name": "llama3.2",
        "timeout_seconds": 2.0,
        "connect_timeout_seconds": 1.0,
    },
    # ollama.com takes one; a local server needs none.
    api_key="ollama-cloud-key",
    question=_OLLAMA_QUESTION,
    answer=Answer(
        "stream",
        Setup(FakeOllama.stream),
        _OLLAMA_QUESTION,
        "The sky is blue.",
        Usage(input_tokens=26, output_tokens=282),
    ),
    completion=Answer(
        "response",
        Setup(FakeOllama.response),
        dataclasses.replace(_OLLAMA_QUESTION, stream=False),
        "Hello! How are you today?",
        Usage(input_tokens=26, output_tokens=298),
    ),
    tool_answers=(
        # Ollama sends each call whole, its arguments an object, and names no call.
        Answer(
            "stream",
            Setup(FakeOllama.tool_call_stream),
            _OLLAMA_QUESTION,
            "",
            Usage(input_tokens=122, output_tokens=33),
            FinishReason.TOOL_CALLS,
            (Call("call_0", "get_current_weather", '{"format":"celsius","location":"Paris, FR"}', whole=True),),
        ),
        Answer(
            "stream_in_11_byte_pieces",
            Setup(functools.partial(FakeOllama.tool_call_stream, chunk_size=11)),
            _OLLAMA_QUESTION,
            "",
            Usage(input_tokens=122, output_tokens=33),
            FinishReason.TOOL_CALLS,
            (Call("call_0", "get_current_weather", '{"format":"celsius","location":"Paris, FR"}', whole=True),),
        ),
    ),
    refusals=(
        # ollama.com's 429; no body was recorded.
        Failure(
            "rate_limited",
            Setup(FakeOllama.rate_limited),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=7.0,
        ),
        # A full queue of pending requests.
        Failure("overloaded", Setup(FakeOllama.overloaded), ErrorKind.OVERLOADED, status_code=503),
        Failure(
            "server_error",
            Setup(FakeOllama.server_error),
            ErrorKind.UNAVAILABLE,
            status_code=500,
            message="the model failed to generate a response",
        ),
        Failure(
            "model_not_found",
            Setup(FakeOllama.model_not_found),
            ErrorKind.BAD_REQUEST,
            status_code=404,
            message='model "llama3.2" not found, try pulling it first',
        ),
        Failure(
            "another_400",
            Setup(
                functools.partial(
                    FakeOllama.error,
                    400,
                    b'{"error":"registry.ollama.ai/library/llama3.2:latest does not support tools"}',
                )
            ),
            ErrorKind.BAD_REQUEST,
            status_code=400,
        ),
        Failure("context_too_long", Setup(FakeOllama.context_too_long), ErrorKind.CONTEXT_TOO_LONG, status_code=400),
        Failure(
            "bad_gateway_without_json",
            Setup(lambda: Reply(status=502, headers=[(b"content-type", b"text/plain")], body=b"Bad Gateway")),
            ErrorKind.UNAVAILABLE,
            status_code=502,
            message="Ollama answered HTTP 502",
        ),
    ),
    timeout=Failure(
        "slow_first_byte",
        Setup(functools.partial(FakeOllama.slow_first_byte, FIRST_BYTE_DELAY), {"timeout_seconds": SHORT_TIMEOUT}),
        ErrorKind.TIMEOUT,
    ),
    cut=Failure(
        "cut", Setup(functools.partial(FakeOllama.cut_mid_stream, lines=2)), ErrorKind.UNAVAILABLE, text="The sky"
    ),
    error_events=(
        # Recorded from /api/generate, whose lines the chat API does not read as text.
        Failure(
            "recorded_error_line",
            Setup(functools.partial(FakeOllama.midstream_error, chunk_size=13)),
            ErrorKind.UNAVAILABLE,
            message="an error was encountered while running the model",
        ),
        Failure(
            "error_line_after_text",
            Setup(functools.partial(FakeOllama.chat_midstream_error, lines=3)),
            ErrorKind.UNAVAILABLE,
            text="The sky is",
            message="an error was encountered while running the model",
        ),
    ),
    malformed_chunk=Failure(
        "malformed_chunk",
        Setup(functools.partial(FakeOllama.malformed_chunk, lines=2, chunk_size=9)),
        ErrorKind.UNAVAILABLE,
        text="The sky",
        message="the provider sent a malformed chunk",
    ),
    wrong_shape=Failure(
        "wrong_shape",
        Setup(functools.partial(FakeOllama.stream, b'{"model":"llama3.2","message":"oops","done":false}\n')),
        ErrorKind.UNAVAILABLE,
    ),
    # Every line but the done line.
    unfinished=Failure(
        "unfinished",
        Setup(functools.partial(FakeOllama.stream, b"".join(_OLLAMA_STREAM_LINES[:-1]))),
        ErrorKind.UNAVAILABLE,
        text="The sky is blue.",
    ),
    # Ollama reads an error in an answer as the model failing while it generated.
    error_in_a_200_answer=Failure(
        "server_error",
        Setup(_with_body(FakeOllama.response, "ollama-error.json")),
        ErrorKind.UNAVAILABLE,
        message="the model failed to generate a response",
    ),
    finish_reasons=(("length", FinishReason.LENGTH),),
    with_finish_reason=lambda reason: _streamed_with(
        FakeOllama.stream, b'"done_reason":"stop"', f'"done_reason":"{reason}"'.encode()
    ),
    target=("/api/chat", ""),
    unstreamed_target=("/api/chat", ""),
    plain_body={"model": "llama3.2", "messages": [{"role": "user", "content": "Hello!"}], "stream": True},
    # Ollama's options take OpenAI's names, but for num_predict.
    sampled_body={
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
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
    },
    unstreamed=lambda body: {**body, "stream": False},
    key_header=("authorization", "Bearer {key}"),
    key_optional=True,
    paced_stream=_paced(FakeOllama.stream, b'"content":"The"', b"\n"),
)


# The simulated provider: no upstream; its options decide how a call plays out.

_SIMULATED_QUESTION = ChatRequest(
    messages=(Message(role="user", content="How should I plan a database migration for a busy checkout service?"),),
    seed="seed-1",
)


def _failing(mode: str, **options: Any) -> Setup:
    return Setup(config={"options": {"fail_rate": 1.0, "fail_mode": mode, **options}})


SIMULATED = Profile(
    kind="simulated",
    adapter_class=SimulatedAdapter,
    config={
        "provider_name": "Simulated",
        "provider_kind": "simulated",
        "model_id": "sim-small",
        "upstream_name": "sim-small",
        "timeout_seconds": 5.0,
        "options": {"first_token_ms": 0, "tokens_per_second": 0},
    },
    api_key="",
    question=_SIMULATED_QUESTION,
    answer=Answer("stream", Setup(), _SIMULATED_QUESTION, None, COUNTED),
    completion=Answer("completion", Setup(), dataclasses.replace(_SIMULATED_QUESTION, stream=False), None, COUNTED),
    tool_answers=(
        # It calls the tool whose name the prompt mentions, with arguments composed from its schema.
        Answer(
            "weather_question",
            Setup(),
            dataclasses.replace(
                _SIMULATED_QUESTION,
                messages=(Message(role="user", content="What's the weather like in Paris?"),),
                tools=(WEATHER_TOOL,),
            ),
            "",
            COUNTED,
            FinishReason.TOOL_CALLS,
            (Call("call_sim*", "get_weather", None, whole=False),),
        ),
    ),
    refusals=(
        Failure(
            "rate_limit",
            _failing("rate_limit", retry_after_ms=1500),
            ErrorKind.RATE_LIMITED,
            status_code=429,
            retry_after=1.5,
            provider_code="rate_limit_exceeded",
        ),
        Failure("overloaded", _failing("overloaded"), ErrorKind.OVERLOADED, status_code=503),
        Failure("unavailable", _failing("unavailable"), ErrorKind.UNAVAILABLE, status_code=500),
        Failure("bad_request", _failing("bad_request"), ErrorKind.BAD_REQUEST, status_code=400),
        Failure(
            "context",
            _failing("context"),
            ErrorKind.CONTEXT_TOO_LONG,
            status_code=400,
            provider_code="context_length_exceeded",
        ),
        # Nothing arrives; after the timeout, a timeout.
        Failure(
            "timeout",
            Setup(config={"timeout_seconds": 0.1, "options": {"fail_rate": 1.0, "fail_mode": "timeout"}}),
            ErrorKind.TIMEOUT,
        ),
    ),
    timeout=Failure(
        "slow_first_token",
        Setup(config={"timeout_seconds": 0.2, "options": {"first_token_ms": 10_000}}),
        ErrorKind.TIMEOUT,
    ),
    cut=Failure("midstream_cut", _failing("midstream_cut"), ErrorKind.UNAVAILABLE, text=None),
)

PROFILES: dict[str, Profile] = {profile.kind: profile for profile in (OPENAI, ANTHROPIC, GEMINI, OLLAMA, SIMULATED)}


@dataclass
class Backend:
    """A profile with its fake upstream running (none for the simulated kind)."""

    profile: Profile
    base_url: str = ""
    fake: FakeUpstream | None = None

    @property
    def question(self) -> ChatRequest:
        return self.profile.question

    @property
    def requests(self) -> list[RecordedRequest]:
        """What the fake received, oldest first."""
        assert self.fake is not None, f"{self.profile.kind} has no upstream"
        return self.fake.requests

    def adapter(self, **overrides: Any) -> ProviderAdapter:
        """The kind's adapter, pointed at its fake, with the profile's key; `options` merge into the profile's."""
        fields: dict[str, Any] = {**self.profile.config, "api_key": self.profile.api_key}
        if self.fake is not None:
            fields["base_url"] = self.base_url + self.profile.base_path
        options = {**fields.get("options", {}), **overrides.pop("options", {})}
        return self.profile.adapter_class(ModelConfig(**{**fields, **overrides, "options": options}))

    def queue(self, *replies: Reply) -> None:
        assert self.fake is not None, f"{self.profile.kind} has no upstream"
        self.fake.queue(*replies)

    def arrange(self, setup: Setup, **reply_options: Any) -> ProviderAdapter:
        """An adapter whose next call plays out `setup`."""
        if setup.reply is not None:
            self.queue(setup.reply(**reply_options))
        return self.adapter(**setup.config)

    def run(self, request: ChatRequest | None = None, *, adapter: ProviderAdapter | None = None) -> list[Event]:
        """All events of one call, after checking the stream contract."""
        events = collect(adapter or self.adapter(), request or self.question)
        assert_contract(events)
        return events

    def play(self, setup: Setup, request: ChatRequest | None = None, **reply_options: Any) -> list[Event]:
        """All events of one call that plays out `setup`."""
        return self.run(request, adapter=self.arrange(setup, **reply_options))


class Upstreams:
    """Each kind's fake upstream, started on first use and stopped with the ExitStack."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self._running: dict[str, tuple[FakeUpstream, str]] = {}

    def backend(self, kind: str) -> Backend:
        """The kind's backend, its fake emptied of requests and replies."""
        profile = PROFILES[kind]
        if profile.fake_class is None:
            return Backend(profile)
        if kind not in self._running:
            fake = profile.fake_class()
            self._running[kind] = (fake, self._stack.enter_context(serve(fake)))
        fake, base_url = self._running[kind]
        fake.reset()
        return Backend(profile, base_url, fake)


def output_text(events: list[Event]) -> str:
    """What the answer wrote, as the token counts see it: text, and each tool call's name and arguments."""
    return "".join(
        event.text if isinstance(event, TextDelta) else (event.name or "") + event.arguments
        for event in events
        if isinstance(event, TextDelta | ToolCallDelta)
    )


def estimated_usage(request: ChatRequest, events: list[Event]) -> Usage:
    """The usage the base class books when the provider reported none."""
    return Usage(
        input_tokens=tokens.estimate_request_tokens(request),
        output_tokens=tokens.estimate_text_tokens(output_text(events)),
        estimated=True,
    )


def counted_usage(request: ChatRequest, events: list[Event]) -> Usage:
    """The usage a provider that counts with routing.tokens reports."""
    return dataclasses.replace(estimated_usage(request, events), estimated=False)


@contextlib.contextmanager
def running_upstreams() -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield Upstreams(stack)
