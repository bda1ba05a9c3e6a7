"""An offline provider that answers like a real one, for demos and tests.

No network: the answer is composed locally. Everything about a call (the
text, the tool arguments, whether and where it fails) derives from a SHA-256
of the model id, request.seed and the prompt, never from global randomness,
so the same call always plays out the same way and a test can predict it.
Different seeds, prompts or models give different answers; a retry with the
same seed fails again, so each attempt that may succeed needs its own seed.

Options (ModelConfig.options, the provider's options merged with the
model's; numbers may be given as numbers or numeric strings; other keys are
ignored; a bad value fails the call as bad_request):

    first_token_ms      latency before the first token (default 350)
    tokens_per_second   streaming speed after it; 0 streams at once (default 40)
    output_tokens       natural answer length, in whole sentences up to about
                        this many tokens (default 120, at most 100000). The
                        answer is cut at request.max_tokens or the model's
                        max_output_tokens, whichever is smaller, and then
                        finishes with `length`
    style               text flavour, so that models answer differently:
                        balanced (default), concise, plain (no lists or
                        headings), friendly, formal, thorough (a heading
                        and long sentences)
    fail_rate           share of calls that fail, 0..1 (default 0)
    fail_mode           how a failing call fails (default unavailable):
                          rate_limit     rate_limited, 429, with retry_after
                          overloaded     overloaded, 503
                          timeout        nothing arrives; after
                                         config.timeout_seconds, timeout
                          unavailable    unavailable, 500
                          midstream_cut  part of the answer, then unavailable
                          bad_request    bad_request, 400
                          context        context_too_long, 400
    retry_after_ms      the retry_after of rate_limit failures (default 2000)

Like a real provider it also
- fails with context_too_long when the prompt (routing.tokens estimate)
  exceeds config.context_window, and with timeout when a wait before the
  next token (first_token_ms, or the gap at tokens_per_second) is longer
  than config.timeout_seconds, after waiting config.timeout_seconds;
- calls a tool when request.tools is non-empty and tool_choice is not
  `none`: the forced tool (`required`: the first; `function`: the named one),
  or with `auto` the first tool whose name the last user message mentions
  (get_weather: "weather"). Arguments are JSON fitting a simple reading of
  the tool's parameter schema, streamed as ToolCallDelta; finish tool_calls.
  After a tool result (a trailing `tool` message) `auto` answers in text;
- answers json_object and json_schema response formats with JSON text;
- stops before the first of request.stop it would have written (finish stop);
- reports Usage itself (estimated=False): input tokens from
  routing.tokens.estimate_request_tokens, output tokens counted with the same
  tokenizer. A call cut mid-stream reports none, so the base class books an
  estimate, as it does for real providers.

Errors other than timeout and midstream_cut arrive at once, as a refusal
would. Calls run on the worker's event loop (routing/calls/worker_loop.py), which a
wait must not block: waits are asyncio.sleep against a monotonic schedule, so
pacing does not drift with the consumer's speed, and a call cancelled or
closed between tokens stops at its wait and does no further work.
request.temperature is ignored.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing import tokens
from routing.providers.base import ProviderAdapter
from routing.providers.errors import ErrorKind, ProviderError
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

FAIL_MODES = ("rate_limit", "overloaded", "timeout", "unavailable", "midstream_cut", "bad_request", "context")
_MAX_OUTPUT_TOKENS = 100_000


@dataclass(frozen=True, slots=True)
class SimulatedOptions:
    first_token_ms: float = 350
    tokens_per_second: float = 40
    output_tokens: int = 120
    style: str = "balanced"
    fail_rate: float = 0.0
    fail_mode: str = "unavailable"
    retry_after_ms: float = 2000

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimulatedOptions:
        """Read the documented keys; raise ProviderError(bad_request) on a bad value."""
        defaults = cls()
        values = cls(
            first_token_ms=_number(options, "first_token_ms", defaults.first_token_ms),
            tokens_per_second=_number(options, "tokens_per_second", defaults.tokens_per_second),
            output_tokens=int(_number(options, "output_tokens", defaults.output_tokens)),
            style=str(options.get("style", defaults.style)),
            fail_rate=_number(options, "fail_rate", defaults.fail_rate),
            fail_mode=str(options.get("fail_mode", defaults.fail_mode)),
            retry_after_ms=_number(options, "retry_after_ms", defaults.retry_after_ms),
        )
        if min(values.first_token_ms, values.tokens_per_second, values.retry_after_ms) < 0:
            raise _option_error("first_token_ms, tokens_per_second and retry_after_ms must not be negative")
        if not 1 <= values.output_tokens <= _MAX_OUTPUT_TOKENS:
            raise _option_error(f"output_tokens must be between 1 and {_MAX_OUTPUT_TOKENS}")
        if not 0 <= values.fail_rate <= 1:
            raise _option_error("fail_rate must be between 0 and 1")
        if values.style not in _STYLES:
            raise _option_error(f"style must be one of {', '.join(_STYLES)}")
        if values.fail_mode not in FAIL_MODES:
            raise _option_error(f"fail_mode must be one of {', '.join(FAIL_MODES)}")
        return values


def _number(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _option_error(f"{key} must be a number, not {value!r}") from None


def _option_error(message: str) -> ProviderError:
    return ProviderError(ErrorKind.BAD_REQUEST, f"simulated provider option: {message}", status_code=400)


class SimulatedAdapter(ProviderAdapter):
    async def _events(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        options = SimulatedOptions.from_options(self.config.options)
        input_tokens = await tokens.aestimate_request_tokens(request)
        if input_tokens > self.config.context_window:
            raise _context_error(input_tokens, self.config.context_window)
        call = _CallHash(self.config.model_id, request)
        pacer = _Pacer(options, self.config.timeout_seconds)
        fails = call.unit("fail") < options.fail_rate
        if fails and options.fail_mode not in ("midstream_cut", "timeout"):
            raise _failure(options, input_tokens)
        if fails and options.fail_mode == "timeout":
            await pacer.stall()
        limit = min(request.max_tokens or self.config.max_output_tokens, self.config.max_output_tokens)
        reply = _Composer(request, options, call).reply(limit)
        cut_at = _cut_point(call, len(reply.events)) if fails else None
        for position, event in enumerate(reply.events):
            await pacer.wait_for(position)
            if position == cut_at:
                raise _cut_error()
            yield event
        if cut_at is not None:
            raise _cut_error()
        yield Usage(input_tokens=input_tokens, output_tokens=reply.output_tokens, estimated=False)
        yield Finish(reply.finish)


def _context_error(input_tokens: int, window: int) -> ProviderError:
    return ProviderError(
        ErrorKind.CONTEXT_TOO_LONG,
        f"This model's maximum context length is {window} tokens; the prompt has about {input_tokens}.",
        status_code=400,
        provider_code="context_length_exceeded",
    )


def _failure(options: SimulatedOptions, input_tokens: int) -> ProviderError:
    mode = options.fail_mode
    if mode == "rate_limit":
        retry_after = options.retry_after_ms / 1000
        return ProviderError(
            ErrorKind.RATE_LIMITED,
            f"Simulated rate limit reached. Please try again in {retry_after:g}s.",
            status_code=429,
            retry_after=retry_after,
            provider_code="rate_limit_exceeded",
        )
    if mode == "overloaded":
        return ProviderError(ErrorKind.OVERLOADED, "The simulated model is overloaded.", status_code=503)
    if mode == "bad_request":
        return ProviderError(ErrorKind.BAD_REQUEST, "The simulated provider refused the request.", status_code=400)
    if mode == "context":
        return ProviderError(
            ErrorKind.CONTEXT_TOO_LONG,
            f"The simulated model refused the prompt ({input_tokens} tokens) as too long for its context.",
            status_code=400,
            provider_code="context_length_exceeded",
        )
    return ProviderError(ErrorKind.UNAVAILABLE, "The simulated server had an error.", status_code=500)


def _cut_point(call: _CallHash, events: int) -> int:
    """Where a midstream_cut call breaks: after at least one event and, when there are two or more, before the last."""
    share = 0.2 + 0.5 * call.unit("cut")
    return min(max(events - 1, 1), max(1, int(events * share)))


def _cut_error() -> ProviderError:
    return ProviderError(ErrorKind.UNAVAILABLE, "the simulated connection dropped mid-stream")


class _CallHash:
    """Deterministic randomness for one call: the same model, seed and prompt give the same draws."""

    def __init__(self, model_id: str, request: ChatRequest) -> None:
        prompt = {
            "system": request.system,
            "messages": [
                [m.role, m.content, list(m.images), m.tool_call_id, [[c.name, c.arguments] for c in m.tool_calls]]
                for m in request.messages
            ],
        }
        material = json.dumps([model_id, request.seed, prompt], ensure_ascii=False, sort_keys=True)
        self.digest = hashlib.sha256(material.encode()).hexdigest()

    def unit(self, purpose: str) -> float:
        """A number in [0, 1) for `purpose`, independent of other purposes."""
        value = int(hashlib.sha256(f"{self.digest}:{purpose}".encode()).hexdigest()[:13], 16)
        return value / 16**13

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.digest}:{purpose}")


class _Pacer:
    """Waits until each event's due time: first_token_ms, then one event per 1/tokens_per_second."""

    def __init__(self, options: SimulatedOptions, timeout_seconds: float) -> None:
        self.first = options.first_token_ms / 1000
        self.gap = 1 / options.tokens_per_second if options.tokens_per_second else 0.0
        self.timeout = timeout_seconds
        self.start = time.monotonic()
        self.last = self.start

    async def wait_for(self, position: int) -> None:
        due = self.start + self.first + position * self.gap
        if due - self.last > self.timeout:
            await self.stall()
        await _sleep_until(due)
        self.last = max(due, self.last)

    async def stall(self) -> None:
        """Send nothing until the read timeout passes, then fail as the client would."""
        await _sleep_until(self.last + self.timeout)
        raise ProviderError(ErrorKind.TIMEOUT, f"no answer within the timeout ({self.timeout:g}s)")


async def _sleep_until(deadline: float) -> None:
    # A loop, not one sleep: uvloop rounds timers to the millisecond, so a
    # sleep may end just short of the deadline.
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(remaining)


@dataclass(frozen=True, slots=True)
class _Reply:
    events: list[TextDelta | ToolCallDelta]
    output_tokens: int
    finish: FinishReason


@dataclass(frozen=True, slots=True)
class _Style:
    openers: tuple[str, ...]
    sentences: tuple[str, ...]
    closers: tuple[str, ...]
    list_marker: str | None
    heading: bool


_STYLES: dict[str, _Style] = {
    "balanced": _Style(
        openers=(
            "Here is an overview of {topic}.",
            "Good question: {topic} comes down to a few ideas.",
            "Let's look at {topic} step by step.",
        ),
        sentences=(
            "The key point about {kw} is that it depends on the context you are working in.",
            "In practice, {kw} and {kw2} tend to influence each other.",
            "A common approach is to start small with {kw} and refine it as you learn more.",
            "It helps to check your assumptions about {kw} before going further.",
            "Most of the trade-offs around {kw} come from balancing cost against reliability.",
            "When {kw} changes, {kw2} usually needs a second look as well.",
            "Measuring {kw} early makes later decisions about {kw2} much easier.",
            "There is rarely a single right answer for {kw}; the details matter.",
        ),
        closers=(
            "Let me know if you would like more detail on {kw}.",
            "I hope this helps with {topic}.",
        ),
        list_marker="-",
        heading=False,
    ),
    "concise": _Style(
        openers=("Short answer: focus on {kw}.", "In short, {topic} depends on {kw}.", "{Kw}: keep it simple."),
        sentences=(
            "Check {kw} first.",
            "Then adjust {kw2}.",
            "Measure before changing {kw}.",
            "Keep {kw} small.",
            "Revisit {kw2} later.",
            "Avoid guessing about {kw}.",
        ),
        closers=("That's it.", "Done."),
        list_marker=None,
        heading=False,
    ),
    "friendly": _Style(
        openers=(
            "Great question about {topic}!",
            "Happy to help with {topic}!",
            "Ooh, {topic} is a fun one!",
        ),
        sentences=(
            "Honestly, {kw} is one of my favourite things to think about.",
            "You're on the right track by asking about {kw}.",
            "A nice way to approach {kw} is to try a tiny experiment first.",
            "Don't worry if {kw} feels tricky at first; it clicks with practice.",
            "Pairing {kw} with {kw2} often works really well.",
            "Lots of people find {kw} easier once they see an example.",
            "Take it one step at a time and {kw2} will fall into place.",
        ),
        closers=(
            "Have fun with {topic}!",
            "Feel free to ask if anything about {kw} is unclear!",
        ),
        list_marker="-",
        heading=False,
    ),
    "formal": _Style(
        openers=(
            "This response addresses {topic}.",
            "The following sets out the main considerations regarding {topic}.",
        ),
        sentences=(
            "It should be noted that {kw} is subject to several constraints.",
            "Accordingly, any assessment of {kw} ought to consider {kw2}.",
            "The available evidence suggests that {kw} merits careful evaluation.",
            "Furthermore, the relationship between {kw} and {kw2} should be documented.",
            "A phased approach to {kw} reduces the associated risk.",
            "Each decision concerning {kw} should be reviewed against the stated objectives.",
        ),
        closers=("In summary, {topic} warrants a considered, incremental approach.",),
        list_marker="1.",
        heading=False,
    ),
    "thorough": _Style(
        openers=(
            "Let me walk through {topic} carefully, because several parts of it interact.",
            "There is a fair amount to say about {topic}, so I will take it piece by piece.",
        ),
        sentences=(
            "To begin with, {kw} sets the constraints that everything else has to respect, so it is worth "
            "writing those constraints down explicitly.",
            "It is also worth separating what you know about {kw} from what you are assuming, since the "
            "assumptions are usually where surprises come from.",
            "The interaction between {kw} and {kw2} deserves particular attention: a change to one tends to "
            "show up in the other later, often in a less obvious form.",
            "A useful check is to ask what would happen to {kw} if the load doubled, and whether {kw2} would "
            "still behave the way you expect.",
            "If you have historical data about {kw}, compare it against your plan before committing, because "
            "it often reveals edge cases that are easy to miss.",
            "Finally, plan how you would roll back a change to {kw}; having that path ready makes the whole "
            "effort much less risky.",
        ),
        closers=("**Summary:** treat {topic} as a series of small, verifiable steps, and check {kw} at each one.",),
        list_marker="-",
        heading=True,
    ),
    "plain": _Style(
        openers=("About {topic}:", "Here is what I can say about {topic}."),
        sentences=(
            "{Kw} matters here.",
            "It depends on {kw} and {kw2}.",
            "Look at {kw} first, then at {kw2}.",
            "Small changes to {kw} are safer than large ones.",
            "Test {kw} before relying on it.",
        ),
        closers=("Hope that helps.",),
        list_marker=None,
        heading=False,
    ),
}

_STOPWORDS = frozenset(
    """a about after all also am an and any are as at be been but by can could did do does for from
    get give had has have how i i'm if in into is it it's its just like me my need of on or our please
    should so some tell than that the their them then there these they this to us was we what what's
    when where which who why will with would you your yours""".split()
)
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
_SENTENCE_END = re.compile(r"[?.!\n]+")
_LEADING_ASK = re.compile(
    r"^(?:(?:please|hey|hi|so|ok|okay)[, ]+|(?:can|could|would|will) you\s+|how (?:do|can|should|would) (?:i|we|you)\s+"
    r"|what(?:'s| is| are)\s+|tell me(?: about)?\s+|explain\s+|describe\s+|(?:i|we) (?:want|need) to\s+"
    r"|help me(?: to)?\s+|show me(?: how to)?\s+)+",
    re.IGNORECASE,
)
_CAPITALIZED = re.compile(r"\b[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
_INTEGER = re.compile(r"\b\d+\b")
_CODE_WORDS = frozenset(
    """code function python javascript typescript js script program implement implementation sql
    regex bash shell snippet algorithm debug refactor rust""".split()
)
_GENERIC_TOOL_WORDS = frozenset(
    "get set fetch list search find lookup look up create update delete run call do make query read write tool".split()
)
_SNIPPETS = {
    "python": (
        "Python",
        "def count_{ident}(items: list[str]) -> dict[str, int]:\n"
        '    """Count how often each {kw} appears."""\n'
        "    counts: dict[str, int] = {{}}\n"
        "    for item in items:\n"
        "        counts[item] = counts.get(item, 0) + 1\n"
        "    return counts",
    ),
    "javascript": (
        "JavaScript",
        "function count{Ident}(items) {{\n"
        "  // Count how often each {kw} appears.\n"
        "  const counts = new Map();\n"
        "  for (const item of items) {{\n"
        "    counts.set(item, (counts.get(item) ?? 0) + 1);\n"
        "  }}\n"
        "  return counts;\n"
        "}}",
    ),
    "sql": (
        "SQL",
        "SELECT {ident}, COUNT(*) AS total\nFROM {ident}_events\nGROUP BY {ident}\nORDER BY total DESC;",
    ),
    "bash": (
        "shell",
        '#!/usr/bin/env bash\nset -euo pipefail\nfor file in "$@"; do\n  echo "Checking {kw}: $file"\ndone',
    ),
    "rust": (
        "Rust",
        "fn count_{ident}(items: &[&str]) -> usize {{\n"
        "    // Count the non-empty {kw} entries.\n"
        "    items.iter().filter(|item| !item.is_empty()).count()\n"
        "}}",
    ),
}


class _Composer:
    """Builds the answer for one call: text, a tool call, or JSON."""

    def __init__(self, request: ChatRequest, options: SimulatedOptions, call: _CallHash) -> None:
        self.request = request
        self.options = options
        self.call = call
        self.style = _STYLES[options.style]
        self.user_text = _last_user_text(request.messages)
        self.keywords = _keywords(self.user_text)
        self.topic = _topic(self.user_text)

    def reply(self, limit: int) -> _Reply:
        tool = self._tool_to_call()
        if tool is not None:
            return self._tool_reply(tool, limit)
        text = self._json_text() if self._wants_json() else self._text()
        return _text_reply(text, self.request.stop, limit)

    def _tool_to_call(self) -> ToolSpec | None:
        request = self.request
        choice = request.tool_choice
        if not request.tools or (choice is not None and choice.mode == "none"):
            return None
        if choice is not None and choice.mode == "function":
            for tool in request.tools:
                if tool.name == choice.name:
                    return tool
            raise ProviderError(
                ErrorKind.BAD_REQUEST,
                f"tool_choice names {choice.name!r}, which is not among the tools",
                status_code=400,
            )
        if choice is not None and choice.mode == "required":
            return request.tools[0]
        if request.messages and request.messages[-1].role == "tool":
            return None
        prompt_words = {word.lower() for word in _WORD.findall(self.user_text)}
        for tool in request.tools:
            if _tool_words(tool.name) & prompt_words:
                return tool
        return None

    def _tool_reply(self, tool: ToolSpec, limit: int) -> _Reply:
        arguments = json.dumps(self._value(tool.parameters or {"type": "object"}, "", 0), ensure_ascii=False)
        ids = tokens.encoding().encode_ordinary(arguments)
        name_tokens = tokens.estimate_text_tokens(tool.name)
        kept = ids[: max(limit - name_tokens, 0)]
        call_id = f"call_sim{self.call.digest[:20]}"
        events: list[TextDelta | ToolCallDelta] = [ToolCallDelta(index=0, id=call_id, name=tool.name)]
        events += [ToolCallDelta(index=0, arguments=piece) for piece in _pieces(kept)]
        finish = FinishReason.TOOL_CALLS if len(kept) == len(ids) else FinishReason.LENGTH
        return _Reply(events=events, output_tokens=name_tokens + len(kept), finish=finish)

    def _wants_json(self) -> bool:
        response_format = self.request.response_format
        return response_format is not None and response_format.type in ("json_object", "json_schema")

    def _json_text(self) -> str:
        response_format = self.request.response_format
        if response_format is not None and response_format.schema:
            return json.dumps(self._value(response_format.schema, "", 0), ensure_ascii=False)
        rng = self.call.rng("json")
        answer = self._fill(rng.choice(self.style.sentences), rng)
        return json.dumps({"topic": self.topic, "answer": answer, "keywords": self.keywords[:5]}, ensure_ascii=False)

    def _value(self, schema: Any, key: str, depth: int) -> Any:
        """A value that fits `schema` as far as type, enum, properties, items and bounds go."""
        if not isinstance(schema, dict) or depth > 6:
            return self._string_for(key)
        rng = self.call.rng(f"value:{depth}:{key}")
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return rng.choice(schema["enum"])
        for combinator in ("anyOf", "oneOf", "allOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options:
                return self._value(options[0], key, depth + 1)
        kind = schema.get("type", "object" if "properties" in schema else "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            properties = schema.get("properties")
            if not isinstance(properties, dict):
                return {}
            return {str(name): self._value(sub, str(name), depth + 1) for name, sub in properties.items()}
        if kind == "array":
            return [self._value(schema.get("items", {}), key, depth + 1)]
        if kind in ("integer", "number"):
            return self._number_for(schema, kind, rng)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string_for(key, schema.get("format"))

    def _number_for(self, schema: dict[str, Any], kind: str, rng: random.Random) -> int | float:
        low = _bound(schema.get("minimum"), 1)
        high = max(_bound(schema.get("maximum"), max(low, 100)), low)
        mentioned = [int(n) for n in _INTEGER.findall(self.user_text) if low <= int(n) <= high]
        if kind == "integer":
            return mentioned[0] if mentioned else rng.randint(math.ceil(low), max(math.floor(high), math.ceil(low)))
        return round(rng.uniform(low, high), 1)

    def _string_for(self, key: str, format_: str | None = None) -> str:
        lowered = key.lower()
        if format_ == "date-time":
            return "2025-06-01T12:00:00Z"
        if format_ == "date" or "date" in lowered:
            return "2025-06-01"
        if format_ == "email" or "email" in lowered:
            return "someone@example.com"
        names: list[str] = [
            phrase for phrase in _CAPITALIZED.findall(self.user_text) if phrase.split()[0].lower() not in _STOPWORDS
        ]
        if names and any(part in lowered for part in ("location", "city", "place", "country", "name", "address")):
            return names[0]
        if names and not self.keywords:
            return names[0]
        return self.topic

    def _text(self) -> str:
        rng = self.call.rng("text")
        style = self.style
        budget = self.options.output_tokens
        blocks: list[str] = []
        if style.heading:
            blocks.append("## " + _capitalize(self.topic))
        first = [self._opening(rng)]
        if any(message.images for message in self.request.messages[-1:]):
            first.append("Thanks for the image; I have taken it into account.")
        first.append(self._fill(rng.choice(style.sentences), rng))
        blocks.append(" ".join(first))
        code = self._code_block()
        if code:
            blocks.append(code)
        used = _count("\n\n".join(blocks))
        if style.list_marker and len(self.keywords) >= 2:
            items = self._list(rng)
            if used + _count(items) <= budget:
                blocks.append(items)
                used += _count(items)
        closer = self._fill(rng.choice(style.closers), rng)
        room = budget - _count(closer) - used
        paragraph: list[str] = []
        for _ in range(budget):
            sentence = self._fill(rng.choice(style.sentences), rng)
            cost = _count(sentence) + 1
            if cost > room:
                break
            paragraph.append(sentence)
            room -= cost
            if len(paragraph) == 3:
                blocks.append(" ".join(paragraph))
                paragraph = []
        if paragraph:
            blocks.append(" ".join(paragraph))
        if room >= 0:
            blocks.append(closer)
        return "\n\n".join(blocks)

    def _opening(self, rng: random.Random) -> str:
        last = self.request.messages[-1] if self.request.messages else None
        if last is not None and last.role == "tool":
            result = " ".join(last.content.split())
            if len(result) > 120:
                result = result[:117] + "..."
            return f"According to {_tool_name(self.request.messages, last)}, the result is: {result}"
        return self._fill(rng.choice(self.style.openers), rng)

    def _list(self, rng: random.Random) -> str:
        lines = []
        for number, keyword in enumerate(self.keywords[:3], start=1):
            marker = f"{number}." if self.style.list_marker == "1." else self.style.list_marker
            sentence = self._fill(rng.choice(self.style.sentences), rng, keyword)
            lines.append(f"{marker} **{_capitalize(keyword)}**: {sentence}")
        return "\n".join(lines)

    def _code_block(self) -> str | None:
        words = {word.lower() for word in _WORD.findall(self.user_text)}
        if not (words & _CODE_WORDS or "```" in self.user_text):
            return None
        language = "python"
        if "sql" in words:
            language = "sql"
        elif words & {"javascript", "js", "typescript"}:
            language = "javascript"
        elif words & {"bash", "shell"}:
            language = "bash"
        elif "rust" in words:
            language = "rust"
        label, template = _SNIPPETS[language]
        names = [k for k in self.keywords if k.isascii() and k.lower() not in _CODE_WORDS]
        keyword = names[-1] if names else "item"
        ident = re.sub(r"[^a-z0-9]+", "_", keyword.lower()).strip("_") or "item"
        code = template.format(ident=ident, Ident=ident.title().replace("_", ""), kw=keyword)
        return f"Here is a small {label} example:\n\n```{language}\n{code}\n```"

    def _fill(self, template: str, rng: random.Random, keyword: str | None = None) -> str:
        words = self.keywords or ["this"]
        kw = keyword or rng.choice(words)
        others = [w for w in words if w != kw] or ["the details"]
        topic = f"“{self.topic}”" if self.user_text else self.topic
        return template.format(topic=topic, kw=kw, kw2=rng.choice(others), Kw=_capitalize(kw))


def _bound(value: Any, default: float) -> float:
    """A schema's numeric bound; a client's malformed bound must not break the call."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else default


def _text_reply(text: str, stop: Sequence[str], limit: int) -> _Reply:
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    ids = tokens.encoding().encode_ordinary(text)
    kept = ids[:limit]
    events: list[TextDelta | ToolCallDelta] = [TextDelta(piece) for piece in _pieces(kept)]
    finish = FinishReason.STOP if len(kept) == len(ids) else FinishReason.LENGTH
    return _Reply(events=events, output_tokens=len(kept), finish=finish)


def _pieces(token_ids: Sequence[int]) -> list[str]:
    """One string per token; a token ending inside a UTF-8 character joins the next one."""
    encoding = tokens.encoding()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
    pieces = []
    for token_id in token_ids:
        if piece := decoder.decode(encoding.decode_single_token_bytes(token_id)):
            pieces.append(piece)
    return pieces


def _count(text: str) -> int:
    return tokens.estimate_text_tokens(text)


def _last_user_text(messages: Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def _keywords(text: str, keep: int = 5) -> list[str]:
    """The `keep` longest distinct words that are not stopwords, in the order they appear."""
    seen: set[str] = set()
    candidates = []
    for word in _WORD.findall(text):
        word = word.strip("'-")[:24]
        lowered = word.lower()
        acronym = len(word) >= 2 and word.isupper()
        if (len(word) < 4 and not acronym) or lowered in _STOPWORDS or lowered in seen:
            continue
        seen.add(lowered)
        candidates.append(word if acronym else lowered)
    # Longer words are more often the content words; acronyms (NYC, SQL) always are.
    ranked = sorted(candidates, key=lambda w: (not w.isupper(), -len(w)))[:keep]
    return [w for w in candidates if w in ranked]


def _topic(text: str) -> str:
    """The gist of the user's first sentence, at most eight words, without the question's opening."""
    first = next((part.strip() for part in _SENTENCE_END.split(text) if part.strip()), "")
    words = _LEADING_ASK.sub("", first).split()
    if not words:
        return "your request"
    return " ".join(words[:8]) + ("…" if len(words) > 8 else "")


def _tool_words(name: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = {w.lower() for w in re.split(r"[\W_]+", spaced) if w}
    meaningful = {w for w in words if w not in _GENERIC_TOOL_WORDS and len(w) >= 3}
    return meaningful | {w + "s" for w in meaningful}


def _tool_name(messages: Sequence[Message], result: Message) -> str:
    if result.name:
        return result.name
    for message in messages:
        for call in message.tool_calls:
            if call.id == result.tool_call_id:
                return call.name
    return "the tool"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]
