"""Tool calling and structured output through /v1 with the official OpenAI SDK, on every provider kind.

Each provider kind is registered against its fake upstream; the assertions
look at what the upstream received (the translation) and at what the SDK
got back (OpenAI's shape).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openai
import pytest

from billing.models import UsageRecord
from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep
from tests.fakes import anthropic as fake_anthropic
from tests.fakes import gemini as fake_gemini
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeUpstream, Reply, wire_head
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

LOCATION = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather in a location", "parameters": LOCATION},
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "Local time in a location", "parameters": LOCATION},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather",
        "description": "The weather in the city asked about",
        "schema": WEATHER_SCHEMA,
        "strict": True,
    },
}

MODELS = {
    "openai": "up/gpt-4o-mini",
    "anthropic": "claude/claude-sonnet-4",
    "gemini": "gem/gemini-2.0-flash",
    "ollama": "llama/llama3.2",
}
KINDS = list(MODELS)

# Every provider kind's fake upstream, keyed by kind.
Fakes = dict[str, FakeUpstream]


@dataclass(frozen=True)
class ToolCallExpected:
    """A tool call as the SDK must see it; `id` None means a made-up id (the upstream sends none)."""

    id: str | None
    name: str
    arguments: str
    text: str = ""


# What each upstream's recorded (or, where noted in the fakes, composed) tool stream must come back as.
STREAMED_CALLS = {
    "openai": ToolCallExpected("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", '{"city":"New York City"}'),
    "anthropic": ToolCallExpected(
        "toolu_01NRLabsLyVHZPKxbKvkfSMn",
        "get_weather",
        '{"location": "Paris"}',
        "I'll check the current weather in Paris for you.",
    ),
    "gemini": ToolCallExpected(None, "get_weather", '{"location": "Paris"}', "Let me look that up."),
    "ollama": ToolCallExpected("call_0", "get_current_weather", '{"format":"celsius","location":"Paris, FR"}'),
}


# Fakes and registry ------------------------------------------------------


def _model(provider: Provider, name: str, capabilities: list[str]) -> LanguageModel:
    model = LanguageModel.objects.create(
        public_id=f"{provider.name}/{name}",
        provider=provider,
        upstream_name=name,
        context_window=128000,
        max_output_tokens=4096,
        capabilities=capabilities,
    )
    ModelPrice.objects.create(model=model, input_per_million=Decimal("1"), output_per_million=Decimal("2"))
    return model


@pytest.fixture
def fakes(
    registry: dict[str, Any],
    upstream: FakeOpenAI,
    other_upstreams: dict[str, tuple[FakeUpstream, str]],
) -> Fakes:
    """Every provider kind registered against its fake, each fake emptied."""
    names = {"anthropic": "claude", "gemini": "gem", "ollama": "llama"}
    for kind, (fake, url) in other_upstreams.items():
        fake.reset()
        provider = Provider(name=names[kind], kind=kind, base_url=url, timeout_seconds=5)
        provider.set_api_key(f"{kind}-upstream-secret")
        provider.save()
        _model(provider, MODELS[kind].split("/", 1)[1], ["json", "tools"])
    return {"openai": upstream, **{kind: fake for kind, (fake, _) in other_upstreams.items()}}


def _last_body(fake: FakeUpstream) -> dict[str, Any]:
    assert fake.requests, "the upstream received nothing"
    body: dict[str, Any] = fake.requests[-1].json()
    return body


# Replies -----------------------------------------------------------------


def _tool_stream(kind: str) -> Reply:
    return {
        "openai": FakeOpenAI.tool_call_stream,
        "anthropic": fake_anthropic.tool_use_stream,
        "gemini": fake_gemini.function_call_stream,
        "ollama": FakeOllama.tool_call_stream,
    }[kind]()


def _anthropic_tool_use_message() -> Reply:
    """Composed: a non-streamed Message ending in a tool_use block, as the Messages API documents it."""
    status, headers = wire_head("anthropic-messages-response.headers")
    message = {
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [
            {"type": "text", "text": "I'll check the current weather in Paris for you."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"location": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 377, "output_tokens": 65},
    }
    return Reply(status=status, headers=headers, body=json.dumps(message).encode())


def _gemini_function_call_response() -> Reply:
    """Composed: a generateContent answer with a functionCall part (Gemini says STOP after a call)."""
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 31, "candidatesTokenCount": 12, "totalTokenCount": 43},
        "modelVersion": "gemini-2.0-flash",
    }
    return Reply(status=200, headers=fake_gemini.JSON_HEADERS, body=json.dumps(body).encode())


def _ollama_tool_call_response() -> Reply:
    """Composed from docs/api.md "Chat request (with tools)", non-streamed: the call whole, done at once."""
    body = {
        "model": "llama3.2",
        "created_at": "2024-07-22T20:33:28.123648Z",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "function": {
                        "name": "get_current_weather",
                        "arguments": {"format": "celsius", "location": "Paris, FR"},
                    }
                }
            ],
        },
        "done_reason": "stop",
        "done": True,
        "prompt_eval_count": 122,
        "eval_count": 33,
    }
    return Reply(headers=[(b"content-type", b"application/json; charset=utf-8")], body=json.dumps(body).encode())


def _tool_answer(kind: str) -> Reply:
    return {
        "openai": lambda: FakeOpenAI.completion("openai-chat-response-tool-calls.json"),
        "anthropic": _anthropic_tool_use_message,
        "gemini": _gemini_function_call_response,
        "ollama": _ollama_tool_call_response,
    }[kind]()


ANSWERED_CALLS = {
    "openai": ToolCallExpected("call_abc123", "get_current_weather", '{\n"location": "Boston, MA"\n}'),
    "anthropic": ToolCallExpected(
        "toolu_01A09q90qw90lq917835lq9",
        "get_weather",
        '{"location": "Paris"}',
        "I'll check the current weather in Paris for you.",
    ),
    "gemini": ToolCallExpected(None, "get_weather", '{"location": "Paris"}'),
    "ollama": ToolCallExpected("call_0", "get_current_weather", '{"format":"celsius","location":"Paris, FR"}'),
}


def _assert_call(call: Any, expected: ToolCallExpected) -> None:
    assert call.type == "function"
    if expected.id is None:
        assert call.id.startswith("call_") and len(call.id) > len("call_")
    else:
        assert call.id == expected.id
    assert call.function.name == expected.name
    assert call.function.arguments == expected.arguments


# The request: tools and tool_choice translated ---------------------------


def _expected_tools(kind: str, body: dict[str, Any]) -> None:
    declared = [WEATHER["function"], TIME["function"]]
    if kind == "openai":
        assert body["tools"] == [WEATHER, TIME]
        assert body["tool_choice"] == FORCE_WEATHER
    elif kind == "anthropic":
        assert body["tools"] == [
            {"name": f["name"], "description": f["description"], "input_schema": LOCATION} for f in declared
        ]
        assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    elif kind == "gemini":
        assert body["tools"] == [
            {
                "functionDeclarations": [
                    {"name": f["name"], "description": f["description"], "parametersJsonSchema": LOCATION}
                    for f in declared
                ]
            }
        ]
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    else:
        # Ollama has no tool_choice: a forced function is the only tool it is sent.
        assert body["tools"] == [WEATHER]
        assert "tool_choice" not in body


@pytest.mark.parametrize("kind", KINDS)
def test_tools_and_a_forced_function_reach_each_upstream_translated(
    client: openai.OpenAI, fakes: Fakes, kind: str
) -> None:
    fakes[kind].queue(_tool_stream(kind))

    stream = client.chat.completions.create(
        model=MODELS[kind], messages=ASK, tools=[WEATHER, TIME], tool_choice=FORCE_WEATHER, stream=True
    )
    list(stream)

    _expected_tools(kind, _last_body(fakes[kind]))


@pytest.mark.parametrize(
    ("kind", "field", "expected"),
    [
        ("openai", "tool_choice", "required"),
        ("anthropic", "tool_choice", {"type": "any"}),
        ("gemini", "toolConfig", {"functionCallingConfig": {"mode": "ANY"}}),
    ],
)
def test_a_required_tool_choice_reaches_each_upstream_in_its_words(
    client: openai.OpenAI, fakes: Fakes, kind: str, field: str, expected: Any
) -> None:
    fakes[kind].queue(_tool_stream(kind))

    stream = client.chat.completions.create(
        model=MODELS[kind], messages=ASK, tools=[WEATHER], tool_choice="required", stream=True
    )
    list(stream)

    assert _last_body(fakes[kind])[field] == expected


# The answer: tool calls in OpenAI's shape --------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_streamed_tool_call_comes_back_as_openai_tool_call_deltas(
    client: openai.OpenAI, fakes: Fakes, kind: str
) -> None:
    fakes[kind].queue(_tool_stream(kind))
    expected = STREAMED_CALLS[kind]

    chunks = list(
        client.chat.completions.create(
            model=MODELS[kind], messages=ASK, tools=[WEATHER], stream=True, stream_options={"include_usage": True}
        )
    )

    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert {d.index for d in deltas} == {0}
    first, rest = deltas[0], deltas[1:]
    assert first.id and first.type == "function" and first.function.name == expected.name
    assert all(d.id is None and d.function.name is None for d in rest), "only the first piece names the call"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert arguments == expected.arguments
    assert json.loads(arguments)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_sdk_stream_helper_assembles_the_same_tool_call(client: openai.OpenAI, fakes: Fakes, kind: str) -> None:
    fakes[kind].queue(_tool_stream(kind))

    with client.chat.completions.stream(model=MODELS[kind], messages=ASK, tools=[WEATHER]) as stream:
        completion = stream.get_final_completion()

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    _assert_call(call, STREAMED_CALLS[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_a_tool_call_answer_comes_back_as_message_tool_calls(client: openai.OpenAI, fakes: Fakes, kind: str) -> None:
    fakes[kind].queue(_tool_answer(kind))
    expected = ANSWERED_CALLS[kind]

    completion = client.chat.completions.create(model=MODELS[kind], messages=ASK, tools=[WEATHER])

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    _assert_call(call, expected)
    assert choice.message.content == (expected.text or None)
    assert _last_body(fakes[kind]).get("stream") in (False, None)


# Multi-turn: an assistant tool call and its result -----------------------

TOOL_TURNS: list[dict[str, Any]] = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
]


def _expected_history(kind: str, body: dict[str, Any]) -> None:
    question = ASK[0]["content"]
    if kind == "openai":
        assert body["messages"] == [
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": TOOL_TURNS[1]["tool_calls"]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
        ]
    elif kind == "anthropic":
        assert body["messages"] == [
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp_c": 21}'}],
            },
        ]
    elif kind == "gemini":
        assert body["contents"] == [
            {"role": "user", "parts": [{"text": question}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": {"temp_c": 21}}}}],
            },
        ]
    else:
        assert body["messages"] == [
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}],
            },
            {"role": "tool", "content": '{"temp_c": 21}', "tool_name": "get_weather"},
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_tool_result_turn_reaches_each_upstream_and_gets_an_answer(
    client: openai.OpenAI, fakes: Fakes, kind: str
) -> None:
    completion = client.chat.completions.create(model=MODELS[kind], messages=TOOL_TURNS, tools=[WEATHER])

    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content
    assert completion.choices[0].message.tool_calls is None
    _expected_history(kind, _last_body(fakes[kind]))


# Structured output --------------------------------------------------------


def test_a_json_schema_response_format_reaches_openai_as_sent(client: openai.OpenAI, fakes: Fakes) -> None:
    client.chat.completions.create(model=MODELS["openai"], messages=ASK, response_format=JSON_SCHEMA_FORMAT)

    assert _last_body(fakes["openai"])["response_format"] == JSON_SCHEMA_FORMAT


def test_a_json_schema_response_format_reaches_gemini_as_response_json_schema(
    client: openai.OpenAI, fakes: Fakes
) -> None:
    client.chat.completions.create(model=MODELS["gemini"], messages=ASK, response_format=JSON_SCHEMA_FORMAT)

    generation = _last_body(fakes["gemini"])["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    assert generation["responseJsonSchema"] == WEATHER_SCHEMA


def test_a_json_schema_response_format_reaches_ollama_as_format(client: openai.OpenAI, fakes: Fakes) -> None:
    client.chat.completions.create(model=MODELS["ollama"], messages=ASK, response_format=JSON_SCHEMA_FORMAT)

    assert _last_body(fakes["ollama"])["format"] == WEATHER_SCHEMA


def test_a_json_schema_response_format_reaches_anthropic_as_a_system_instruction(
    client: openai.OpenAI, fakes: Fakes
) -> None:
    client.chat.completions.create(model=MODELS["anthropic"], messages=ASK, response_format=JSON_SCHEMA_FORMAT)

    system = _last_body(fakes["anthropic"])["system"]
    assert json.dumps(WEATHER_SCHEMA) in system
    assert "The weather in the city asked about" in system


def test_a_json_object_response_format_reaches_openai_and_gemini(client: openai.OpenAI, fakes: Fakes) -> None:
    client.chat.completions.create(model=MODELS["openai"], messages=ASK, response_format={"type": "json_object"})
    client.chat.completions.create(model=MODELS["gemini"], messages=ASK, response_format={"type": "json_object"})

    assert _last_body(fakes["openai"])["response_format"] == {"type": "json_object"}
    generation = _last_body(fakes["gemini"])["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in generation


# Routes and capabilities ---------------------------------------------------


@pytest.fixture
def tooling_route(registry: dict[str, Any]) -> Route:
    """A route whose first model cannot call tools, then one that can."""
    plain = _model(registry["providers"]["up"], "plain-model", ["code"])
    route = Route.objects.create(name="tooling")
    RouteStep.objects.create(route=route, model=plain, position=0)
    RouteStep.objects.create(route=route, model=registry["models"]["gpt"], position=1)
    return route


def test_a_route_skips_a_model_without_the_tools_capability(
    client: openai.OpenAI, upstream: FakeOpenAI, tooling_route: Route
) -> None:
    upstream.queue(FakeOpenAI.tool_call_stream())

    raw = client.chat.completions.with_raw_response.create(model="tooling", messages=ASK, tools=[WEATHER], stream=True)
    chunks = list(raw.parse())

    assert raw.headers["x-switchyard-model"] == "up/gpt-4o-mini"
    assert raw.headers["x-switchyard-attempts"] == "up/plain-model=skipped, up/gpt-4o-mini=answering"
    assert [json.loads(r.body)["model"] for r in upstream.requests] == ["gpt-4o-mini"]
    assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    record = booked(raw.headers["x-request-id"])
    assert record.model == "up/gpt-4o-mini"
    assert record.trace["skipped"] == [{"model": "up/plain-model", "reason": "lacks tools"}]
    assert [(a["model"], a["outcome"], a.get("message")) for a in record.attempts] == [
        ("up/plain-model", "skipped", "lacks tools"),
        ("up/gpt-4o-mini", "ok", None),
    ]


def test_a_route_keeps_a_model_without_tools_for_a_call_without_tools(
    client: openai.OpenAI, upstream: FakeOpenAI, tooling_route: Route
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="tooling", messages=ASK)

    assert raw.headers["x-switchyard-model"] == "up/plain-model"
    assert raw.headers["x-switchyard-attempts"] == "up/plain-model=ok"


def test_a_tool_choice_of_none_needs_no_tools_capability(
    client: openai.OpenAI, upstream: FakeOpenAI, tooling_route: Route
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tooling", messages=ASK, tools=[WEATHER], tool_choice="none"
    )

    assert raw.headers["x-switchyard-model"] == "up/plain-model"
    assert _last_body(upstream)["tool_choice"] == "none"


def test_a_route_with_no_model_able_to_call_tools_refuses_with_400(
    client: openai.OpenAI, registry: dict[str, Any]
) -> None:
    plain = _model(registry["providers"]["up"], "plain-model", ["code"])
    RouteStep.objects.create(route=Route.objects.create(name="plain-only"), model=plain, position=0)

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="plain-only", messages=ASK, tools=[WEATHER])

    assert caught.value.code == "model_not_supported"
    assert caught.value.param == "model"
    assert "tools" in caught.value.message
    assert UsageRecord.objects.count() == 0
