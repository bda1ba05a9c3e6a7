"""What is particular to the Gemini adapter; the contract suite (test_contract.py) covers the rest."""

from __future__ import annotations

import dataclasses

import pytest

from routing.providers.errors import ErrorKind
from routing.providers.types import (
    ChatRequest,
    Finish,
    FinishReason,
    Message,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.fakes import gemini as fakes
from tests.routing.providers.contract import Backend
from tests.routing.providers.stream_checks import error_of, text_of, usage_of

# additionalProperties is JSON Schema that Gemini's older OpenAPI-subset `parameters` field refuses.
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


def test_it_sends_assistant_turns_as_model_turns(gemini: Backend) -> None:
    request = ChatRequest(
        messages=(
            Message(role="user", content="Hello"),
            Message(role="assistant", content="Great to meet you. What would you like to know?"),
            Message(role="user", content="I have two dogs in my house. How many paws are in my house?"),
        ),
    )

    gemini.run(request)

    assert gemini.requests[0].json()["contents"] == [
        {"role": "user", "parts": [{"text": "Hello"}]},
        {"role": "model", "parts": [{"text": "Great to meet you. What would you like to know?"}]},
        {"role": "user", "parts": [{"text": "I have two dogs in my house. How many paws are in my house?"}]},
    ]


def test_it_translates_tools_tool_calls_and_tool_results(gemini: Backend) -> None:
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

    gemini.run(request)

    body = gemini.requests[0].json()
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
def test_it_maps_tool_choice(gemini: Backend, choice: ToolChoice, expected: dict[str, object]) -> None:
    gemini.run(dataclasses.replace(gemini.question, tools=(WEATHER_TOOL,), tool_choice=choice))

    assert gemini.requests[0].json()["toolConfig"] == {"functionCallingConfig": expected}


def test_it_sends_images_inline_or_by_uri(gemini: Backend) -> None:
    message = Message(
        role="user",
        content="What is in these?",
        images=("data:image/png;base64,iVBORw0KGgo=", "https://example.com/photos/cat.webp"),
    )

    gemini.run(ChatRequest(messages=(message,)))

    assert gemini.requests[0].json()["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/photos/cat.webp", "mimeType": "image/webp"}},
        {"text": "What is in these?"},
    ]


def test_it_asks_for_json_with_the_schema(gemini: Backend) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}

    gemini.run(dataclasses.replace(gemini.question, response_format=ResponseFormat(type="json_schema", schema=schema)))
    gemini.run(dataclasses.replace(gemini.question, response_format=ResponseFormat(type="json_object")))

    assert gemini.requests[0].json()["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert gemini.requests[1].json()["generationConfig"] == {"responseMimeType": "application/json"}


def test_it_leaves_thoughts_out_of_the_text_but_counts_them_as_output(gemini: Backend) -> None:
    gemini.queue(fakes.thinking_stream(chunk_size=64))

    events = gemini.run()

    assert text_of(events) == (
        "The sky is blue because tiny gas molecules in Earth's atmosphere scatter blue light from the sun more "
        "efficiently than other colors. Blue light has shorter, smaller wavelengths, causing it to be scattered "
        "in all directions, making the sky appear blue to our eyes."
    )
    assert usage_of(events) == Usage(input_tokens=10, output_tokens=48 + 540, reasoning_tokens=540)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_finishes_a_safety_stop_as_content_filter(gemini: Backend) -> None:
    gemini.queue(fakes.safety_response())

    events = gemini.run(dataclasses.replace(gemini.question, stream=False))

    assert text_of(events) == "Safety error incoming in 5, 4, 3, 2..."
    assert usage_of(events) == Usage(input_tokens=7, output_tokens=20)
    assert events[-1] == Finish(FinishReason.CONTENT_FILTER)


def test_it_reports_a_blocked_prompt_as_content_filtered(gemini: Backend) -> None:
    gemini.queue(fakes.blocked_prompt())

    error = error_of(gemini.run())

    assert error.kind is ErrorKind.CONTENT_FILTERED
    assert error.provider_code == "PROHIBITED_CONTENT"
