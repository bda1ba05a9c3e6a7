"""What is particular to the OpenAI-compatible adapter; the contract suite (test_contract.py) covers the rest."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

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
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply, wire, with_counts
from tests.routing.providers.contract import Backend
from tests.routing.providers.stream_checks import text_of, usage_of


def test_it_accepts_chunks_without_a_usage_key(openai: Backend) -> None:
    openai.queue(FakeOpenAI.stream("openai-chat-stream-recorded.sse", chunk_size=61))
    events = openai.run()
    assert text_of(events) == (
        "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, "
        "I recommend checking a reliable weather website or a weather app."
    )
    assert usage_of(events) == Usage(input_tokens=14, output_tokens=30)
    assert events[-1] == Finish(FinishReason.STOP)


def test_it_reads_the_recorded_stream_cut_short_by_max_tokens(openai: Backend) -> None:
    openai.queue(FakeOpenAI.length_stream())
    events = openai.run()
    assert text_of(events) == '{"'
    assert usage_of(events) == Usage(input_tokens=79, output_tokens=1)
    assert events[-1] == Finish(FinishReason.LENGTH)


def test_it_sends_the_translated_request(openai: Backend) -> None:
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
        tools=(weather,),
        tool_choice=ToolChoice(mode="function", name="get_current_weather"),
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}, name="weather", strict=True),
    )
    openai.run(request)
    assert openai.requests[0].json() == {
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
def test_it_sends_tool_choice_modes_as_strings(openai: Backend, mode: Any) -> None:
    openai.run(
        ChatRequest(messages=openai.question.messages, tools=(ToolSpec(name="f"),), tool_choice=ToolChoice(mode=mode))
    )
    body = openai.requests[0].json()
    assert body["tool_choice"] == mode
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]


def test_it_sends_parallel_tool_calls_only_with_tools(openai: Backend) -> None:
    messages = openai.question.messages
    openai.run(ChatRequest(messages=messages, tools=(ToolSpec(name="f"),), parallel_tool_calls=False))
    openai.run(ChatRequest(messages=messages, parallel_tool_calls=False))
    with_tools, without = (sent.json() for sent in openai.requests)
    assert with_tools["parallel_tool_calls"] is False
    # OpenAI refuses parallel_tool_calls in a request without tools.
    assert "parallel_tool_calls" not in without


@pytest.mark.parametrize(("capabilities", "sent"), [(frozenset({"reasoning"}), "high"), (frozenset(), None)])
def test_it_sends_reasoning_effort_only_to_reasoning_models(
    openai: Backend, capabilities: frozenset[str], sent: str | None
) -> None:
    adapter = openai.adapter(capabilities=capabilities)
    openai.run(ChatRequest(messages=openai.question.messages, reasoning_effort="high"), adapter=adapter)
    assert openai.requests[0].json().get("reasoning_effort") == sent


def test_it_asks_for_a_json_object(openai: Backend) -> None:
    openai.run(ChatRequest(messages=openai.question.messages, response_format=ResponseFormat(type="json_object")))
    assert openai.requests[0].json()["response_format"] == {"type": "json_object"}


def test_it_sends_max_completion_tokens_when_configured(openai: Backend) -> None:
    adapter = openai.adapter(options={"max_tokens_field": "max_completion_tokens"})
    openai.run(ChatRequest(messages=openai.question.messages, max_tokens=64), adapter=adapter)
    body = openai.requests[0].json()
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body


def test_it_sends_the_seed_under_the_configured_field(openai: Backend) -> None:
    adapter = openai.adapter(options={"seed_field": "random_seed"})
    openai.run(ChatRequest(messages=openai.question.messages, sampling_seed=7), adapter=adapter)
    body = openai.requests[0].json()
    assert body["random_seed"] == 7
    assert "seed" not in body


def test_it_reads_the_text_parts_of_a_list_content(openai: Backend) -> None:
    completion = json.loads(wire("openai-chat-response.json"))
    completion["choices"][0]["message"]["content"] = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "The user greets me."}]},
        {"type": "text", "text": "Hello!"},
    ]
    openai.queue(Reply(headers=FakeOpenAI.completion().headers, body=json.dumps(completion).encode()))
    assert text_of(openai.run(ChatRequest(messages=openai.question.messages, stream=False))) == "Hello!"


def test_it_reads_usage_details_sent_as_null_as_none(openai: Backend) -> None:
    """vLLM and other compatible servers send the details as null."""
    recorded = wire("openai-chat-stream.sse")
    details = recorded[recorded.index(b',"prompt_tokens_details"') : recorded.rindex(b"}}}") + 1]
    body = recorded.replace(details, b',"prompt_tokens_details":null,"completion_tokens_details":null')
    openai.queue(Reply(headers=FakeOpenAI.stream().headers, body=body))

    assert usage_of(openai.run()) == Usage(input_tokens=19, output_tokens=10)


def test_it_never_takes_a_detail_for_more_than_its_total(openai: Backend) -> None:
    openai.queue(
        Reply(
            headers=FakeOpenAI.stream().headers,
            body=with_counts(wire("openai-chat-stream.sse"), cached_tokens=25, reasoning_tokens=-3),
        )
    )

    assert usage_of(openai.run()) == Usage(input_tokens=19, output_tokens=10, cached_input_tokens=19)


def test_it_finishes_a_stream_that_closes_after_the_finish_chunk(openai: Backend) -> None:
    recorded = wire("openai-chat-stream.sse")
    without_usage = recorded[: recorded.rindex(b"data: ", 0, recorded.index(b'"choices":[]'))]
    openai.queue(Reply(headers=FakeOpenAI.stream().headers, body=without_usage))
    events = openai.run()
    assert text_of(events) == "Hello! How can I assist you today?"
    assert events[-1] == Finish(FinishReason.STOP)
    assert usage_of(events).estimated


def test_it_lists_models_on_the_fake(openai: Backend) -> None:
    response = httpx.get(f"{openai.base_url}/v1/models")
    assert response.json()["data"][0]["id"] == "model-id-0"
