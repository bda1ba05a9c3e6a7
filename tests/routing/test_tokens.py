from __future__ import annotations

import json
from typing import Any

import pytest

from routing import tokens
from routing.providers.types import ChatRequest, Message, ResponseFormat, ToolCall, ToolSpec
from tests.fakes.server import wire

PROSE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps out of habit "
    "rather than necessity. Two hundred and twelve. The lamp needed oil, the lens needed polishing, and the "
    "logbook needed an entry describing the weather, the ships that had passed, and anything unusual. Most "
    "nights there was nothing unusual, which was exactly how she liked it."
)
CODE = '''def moving_average(values: list[float], window: int) -> list[float]:
    """Return the simple moving average of `values` over `window` items."""
    if window <= 0:
        raise ValueError("window must be positive")
    total = sum(values[:window])
    result = [total / window]
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        result.append(total / window)
    return result
'''
GERMAN = (
    "Die Stadtbibliothek bleibt wegen Renovierungsarbeiten bis Ende des Monats geschlossen. "
    "Ausgeliehene Bücher können in der Zwischenzeit im Rathaus zurückgegeben werden."
)
RUSSIAN = "Библиотека закрыта на ремонт до конца месяца. Взятые книги можно вернуть в здании городской администрации."
JAPANESE = "図書館は改装工事のため今月末まで休館します。借りた本は市役所で返却できます。"
CHINESE = "图书馆因装修将闭馆至本月底。借阅的图书可以在市政厅归还。"

WEATHER_QUESTION = ChatRequest(messages=(Message(role="user", content="What's the weather like in SF?"),))


def sse_payloads(name: str) -> list[Any]:
    """The JSON documents of a recorded SSE file's `data:` lines."""
    lines = wire(name).decode().splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def openai_answer(name: str) -> tuple[str, int]:
    chunks = sse_payloads(name)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, next(c["usage"]["completion_tokens"] for c in chunks if c.get("usage"))


def gemini_answer(name: str) -> tuple[str, int]:
    chunks = sse_payloads(name)
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"] if not p.get("thought")]
    return "".join(p["text"] for p in parts), chunks[-1]["usageMetadata"]["candidatesTokenCount"]


def test_it_counts_a_recorded_gpt_4o_answer_exactly() -> None:
    text, reported = openai_answer("openai-chat-stream-recorded.sse")

    assert reported == 30
    assert tokens.estimate_text_tokens(text) == reported


@pytest.mark.parametrize("name", ["gemini-stream.sse", "gemini-stream-thinking.sse"])
def test_it_is_within_five_percent_of_geminis_recorded_counts(name: str) -> None:
    text, reported = gemini_answer(name)

    assert abs(tokens.estimate_text_tokens(text) - reported) <= 0.05 * reported


def test_it_is_within_five_percent_of_a_recorded_gemini_response() -> None:
    body = json.loads(wire("gemini-generate-content-response.json"))
    text = body["candidates"][0]["content"]["parts"][0]["text"]

    reported = body["usageMetadata"]["candidatesTokenCount"]
    assert abs(tokens.estimate_text_tokens(text) - reported) <= 0.05 * reported


def test_it_undercounts_claude_by_its_few_framing_tokens() -> None:
    events = sse_payloads("anthropic-messages-stream-recorded.sse")
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    reported = next(e["usage"]["output_tokens"] for e in events if e["type"] == "message_delta")

    assert 0 < reported - tokens.estimate_text_tokens(text) <= 3


@pytest.mark.parametrize(
    ("text", "count"),
    [(PROSE, 73), (CODE, 101), (GERMAN, 31), (RUSSIAN, 24), (JAPANESE, 31), (CHINESE, 25)],
)
def test_it_counts_o200k_base_tokens_of_prose_code_and_other_languages(text: str, count: int) -> None:
    assert tokens.estimate_text_tokens(text) == count


def test_the_shipped_ranks_are_openais_o200k_base() -> None:
    encoding = tokens.encoding()

    assert encoding.name == "o200k_base"
    assert encoding.n_vocab == 200019
    assert encoding.encode_ordinary("Hello world") == [13225, 2375]


@pytest.mark.parametrize("text", ["a", " ", "\n", "🙂", "é", "<|endoftext|>"])
def test_non_empty_text_is_never_zero_tokens(text: str) -> None:
    assert tokens.estimate_text_tokens(text) >= 1


def test_empty_text_is_zero_tokens() -> None:
    assert tokens.estimate_text_tokens("") == 0


def test_special_token_spellings_in_a_prompt_count_as_text() -> None:
    assert tokens.estimate_text_tokens("<|endoftext|>") > 1


def test_it_matches_the_prompt_counts_of_recorded_gpt_4o_requests() -> None:
    with_tool = ChatRequest(
        messages=(Message(role="user", content="what's the weather in NYC?"),),
        tools=(
            ToolSpec(name="get_weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}}),
        ),
    )
    location_schema = {
        "properties": {
            "city": {"title": "City", "type": "string"},
            "temperature": {"title": "Temperature", "type": "number"},
            "units": {"enum": ["c", "f"], "title": "Units", "type": "string"},
        },
        "required": ["city", "temperature", "units"],
        "title": "Location",
        "type": "object",
        "additionalProperties": False,
    }
    with_schema = ChatRequest(
        messages=WEATHER_QUESTION.messages,
        response_format=ResponseFormat(type="json_schema", schema=location_schema, name="Location", strict=True),
    )

    assert tokens.estimate_request_tokens(WEATHER_QUESTION) == 14
    assert tokens.estimate_request_tokens(with_tool) == 44
    assert tokens.estimate_request_tokens(with_schema) == 79


def test_the_request_estimate_includes_the_system_text() -> None:
    with_system = ChatRequest(messages=WEATHER_QUESTION.messages, system="You are a helpful assistant.")

    added = tokens.estimate_request_tokens(with_system) - tokens.estimate_request_tokens(WEATHER_QUESTION)

    assert added == 4 + tokens.estimate_text_tokens("You are a helpful assistant.")


def test_the_request_estimate_includes_every_message_and_its_tool_calls() -> None:
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "San Francisco"}')
    longer = ChatRequest(
        messages=(
            *WEATHER_QUESTION.messages,
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", tool_call_id="call_1", content="64 degrees and foggy"),
        )
    )

    added = tokens.estimate_request_tokens(longer) - tokens.estimate_request_tokens(WEATHER_QUESTION)

    call_tokens = tokens.estimate_text_tokens(call.name) + tokens.estimate_text_tokens(call.arguments)
    assert added == 4 + call_tokens + 4 + tokens.estimate_text_tokens("64 degrees and foggy")


def test_the_request_estimate_includes_tools_and_images() -> None:
    tool = ToolSpec(name="lookup_order", description="Find an order by its id", parameters={"type": "object"})
    question = Message(role="user", content="What's the weather like in SF?", images=("https://example.com/a.png",))
    with_image = ChatRequest(messages=(question,))

    assert tokens.estimate_request_tokens(ChatRequest(messages=WEATHER_QUESTION.messages, tools=(tool,))) > 14 + 9
    assert tokens.estimate_request_tokens(with_image) == 14 + 85


@pytest.mark.parametrize(
    "text",
    ["Hello!", "def f(x):\n    return x * 2\n", "Привет, как дела?", "東京は日本の首都です。", "🙂🙃 emoji"],
)
def test_the_upper_bound_is_never_below_the_estimate(text: str) -> None:
    request = ChatRequest(
        messages=(Message(role="user", content=text, tool_calls=(ToolCall("c1", "f", '{"a": 1}'),)),),
        system=text,
        tools=(ToolSpec(name="f", description=text, parameters={"type": "object"}),),
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}, name="x"),
    )
    assert tokens.request_tokens_upper_bound(request) >= tokens.estimate_request_tokens(request)
