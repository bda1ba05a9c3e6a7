"""What is particular to the Ollama adapter; the contract suite (test_contract.py) covers the rest."""

from __future__ import annotations

from routing.providers.errors import ErrorKind
from routing.providers.types import (
    ChatRequest,
    Message,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from tests.fakes.ollama import FakeOllama
from tests.routing.providers.contract import Backend
from tests.routing.providers.stream_checks import error_of, usage_of


def test_it_counts_an_absent_prompt_eval_count_as_a_reported_zero(ollama: Backend) -> None:
    ollama.queue(FakeOllama.cached_prompt_stream())
    assert usage_of(ollama.run()) == Usage(input_tokens=0, output_tokens=282, estimated=False)


def test_it_sends_the_translated_request(ollama: Backend) -> None:
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
        tools=(weather,),
        response_format=ResponseFormat(type="json_object"),
    )
    ollama.run(request)
    assert ollama.requests[0].json() == {
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


def test_it_sends_a_json_schema_as_the_format(ollama: Backend) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    ollama.run(
        ChatRequest(
            messages=ollama.question.messages, response_format=ResponseFormat(type="json_schema", schema=schema)
        )
    )
    assert ollama.requests[0].json()["format"] == schema


def test_it_sends_no_tools_when_tool_choice_is_none(ollama: Backend) -> None:
    request = ChatRequest(
        messages=ollama.question.messages, tools=(ToolSpec(name="f"),), tool_choice=ToolChoice(mode="none")
    )
    ollama.run(request)
    assert "tools" not in ollama.requests[0].json()


def test_it_sends_only_the_chosen_tool(ollama: Backend) -> None:
    request = ChatRequest(
        messages=ollama.question.messages,
        tools=(ToolSpec(name="f"), ToolSpec(name="g")),
        tool_choice=ToolChoice(mode="function", name="g"),
    )
    ollama.run(request)
    assert ollama.requests[0].json()["tools"] == [{"type": "function", "function": {"name": "g"}}]


def test_it_refuses_an_image_url_without_calling_ollama(ollama: Backend) -> None:
    request = ChatRequest(messages=(Message(role="user", content="?", images=("https://example.com/cat.png",)),))
    error = error_of(ollama.run(request))
    assert error.kind is ErrorKind.BAD_REQUEST
    assert ollama.requests == []
