"""What is particular to the Anthropic adapter; the contract suite (test_contract.py) covers the rest."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from routing.providers.types import (
    ChatRequest,
    Message,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.fakes import anthropic as fakes
from tests.fakes.server import wire
from tests.routing.providers.contract import WEATHER_TOOL, Backend
from tests.routing.providers.stream_checks import text_of, usage_of


def test_it_parses_the_documented_stream_with_spaces_in_its_json(anthropic: Backend) -> None:
    anthropic.queue(fakes.stream("anthropic-messages-stream.sse", chunk_size=13))

    events = anthropic.run()

    assert text_of(events) == "Hello!"
    assert usage_of(events) == Usage(input_tokens=25, output_tokens=15)


def test_it_sends_the_api_version_it_speaks(anthropic: Backend) -> None:
    anthropic.run()
    anthropic.run(dataclasses.replace(anthropic.question, stream=False))

    assert [sent.headers["anthropic-version"] for sent in anthropic.requests] == ["2023-06-01", "2023-06-01"]


def test_it_translates_tools_tool_calls_and_tool_results(anthropic: Backend) -> None:
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

    anthropic.run(request)

    body = anthropic.requests[0].json()
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
def test_it_maps_tool_choice(anthropic: Backend, choice: ToolChoice, expected: dict[str, str]) -> None:
    anthropic.run(dataclasses.replace(anthropic.question, tools=(WEATHER_TOOL,), tool_choice=choice))

    assert anthropic.requests[0].json()["tool_choice"] == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="required"), {"type": "any", "disable_parallel_tool_use": True}),
        (ToolChoice(mode="none"), {"type": "none"}),
    ],
)
def test_it_carries_parallel_tool_calls_false_in_the_tool_choice(
    anthropic: Backend, choice: ToolChoice | None, expected: dict[str, Any]
) -> None:
    request = dataclasses.replace(
        anthropic.question, tools=(WEATHER_TOOL,), tool_choice=choice, parallel_tool_calls=False
    )

    anthropic.run(request)

    assert anthropic.requests[0].json()["tool_choice"] == expected


def test_it_sends_images_as_base64_or_url_sources(anthropic: Backend) -> None:
    message = Message(
        role="user",
        content="What is in these?",
        images=("data:image/png;base64,iVBORw0KGgo=", "https://example.com/cat.jpg"),
    )

    anthropic.run(ChatRequest(messages=(message,)))

    assert anthropic.requests[0].json()["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What is in these?"},
    ]


def test_it_asks_for_json_matching_the_schema_in_the_system_prompt(anthropic: Backend) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    request = dataclasses.replace(
        anthropic.question,
        system="Be brief.",
        response_format=ResponseFormat(type="json_schema", schema=schema, name="answer"),
    )

    anthropic.run(request)

    system = anthropic.requests[0].json()["system"]
    assert system.startswith("Be brief.\n\n")
    assert "JSON object" in system
    assert json.dumps(schema) in system


def test_it_asks_for_a_json_object_without_a_schema(anthropic: Backend) -> None:
    anthropic.run(dataclasses.replace(anthropic.question, response_format=ResponseFormat(type="json_object")))

    system = anthropic.requests[0].json()["system"]
    assert "JSON object" in system
    assert "Schema" not in system


def test_it_counts_cache_tokens_as_input_and_reports_them_apart(anthropic: Backend) -> None:
    body = wire(fakes.RECORDED_STREAM).replace(
        b'"usage":{"input_tokens":11,"output_tokens":1}',
        b'"usage":{"input_tokens":11,"cache_creation_input_tokens":100,'
        b'"cache_read_input_tokens":2000,"output_tokens":1}',
    )
    anthropic.queue(fakes.stream_of(body))

    events = anthropic.run()

    assert usage_of(events) == Usage(
        input_tokens=2111, output_tokens=6, cached_input_tokens=2000, cache_write_tokens=100
    )


def test_it_takes_the_cumulative_counts_of_message_delta(anthropic: Backend) -> None:
    body = wire(fakes.TOOL_USE_STREAM).replace(
        b'"usage":{"output_tokens":65}',
        b'"usage":{"input_tokens":377,"cache_creation_input_tokens":30,"cache_read_input_tokens":40,'
        b'"output_tokens":66}',
    )
    anthropic.queue(fakes.stream_of(body))

    events = anthropic.run()

    assert usage_of(events) == Usage(input_tokens=447, output_tokens=66, cached_input_tokens=40, cache_write_tokens=30)
