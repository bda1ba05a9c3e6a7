"""The vocabulary of a call's events: what the worker publishes on the call's stream, and what its readers get.

One class per kind of event; each encodes itself into a stream entry and is
decoded from one, so that no producer or reader handles the entry's fields.
An entry has two fields, `t` (the kind) and `d` (the data as compact JSON):

    start   Started     a model is answering: which one, and the attempts before it
    delta   Text        answer text
    tool    ToolPiece   a piece of a tool call
    done    Done        the call ended well; its figures, and the whole answer when not streamed; last
    error   Failed      the call failed, or was cancelled; its figures and why; last

The figures of a terminal event are those of the call's usage record, so
that a run that dies after publishing it can be booked from it alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

# Set on a Failed event that ends a call its client cancelled (nginx's "client closed request").
CANCELLED_STATUS = 499


@dataclass(frozen=True, slots=True)
class Figures:
    """What a terminal event tells of its call, whatever its end: the figures of its usage record."""

    model: str = ""
    provider: str = ""
    route: str = ""
    attempts: tuple[dict[str, Any], ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    # Parts of input_tokens and output_tokens.
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # USD as a decimal string (the record's cost_usd), None when the model has no price.
    cost: str | None = None
    latency_ms: int = 0
    ttft_ms: int | None = None
    # Answered from the response cache, and what that saved (USD as a decimal string, None when unpriced).
    cache_hit: bool = False
    cache_saving: str | None = None

    def to_data(self) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "estimated": self.tokens_estimated,
        }
        # Most calls have none of these parts; a part left out reads as 0, as in events of an older worker.
        for key, count in (
            ("cached", self.cached_input_tokens),
            ("cache_write", self.cache_write_tokens),
            ("reasoning", self.reasoning_tokens),
        ):
            if count:
                usage[key] = count
        data = {
            "model": self.model,
            "provider": self.provider,
            "route": self.route,
            "attempts": list(self.attempts),
            "usage": usage,
            "cost": self.cost,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
        }
        if self.cache_hit:
            data["cache_hit"] = True
            data["cache_saving"] = self.cache_saving
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Figures:
        usage = data.get("usage") or {}
        return cls(
            model=data.get("model", ""),
            provider=data.get("provider", ""),
            route=data.get("route", ""),
            attempts=tuple(data.get("attempts", ())),
            input_tokens=usage.get("input", 0),
            output_tokens=usage.get("output", 0),
            tokens_estimated=usage.get("estimated", False),
            cached_input_tokens=usage.get("cached", 0),
            cache_write_tokens=usage.get("cache_write", 0),
            reasoning_tokens=usage.get("reasoning", 0),
            cost=data.get("cost"),
            latency_ms=data.get("latency_ms", 0),
            ttft_ms=data.get("ttft_ms"),
            cache_hit=bool(data.get("cache_hit")),
            cache_saving=data.get("cache_saving"),
        )


@dataclass(frozen=True, slots=True)
class Started:
    KIND: ClassVar[str] = "start"
    model: str
    provider: str = ""
    attempts: tuple[dict[str, Any], ...] = ()
    # The answer that follows is replayed from the response cache.
    cache_hit: bool = False

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "provider": self.provider, "attempts": list(self.attempts)}
        if self.cache_hit:
            data["cache_hit"] = True
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Started:
        return cls(
            data["model"], data.get("provider", ""), tuple(data.get("attempts", ())), bool(data.get("cache_hit"))
        )


@dataclass(frozen=True, slots=True)
class Text:
    KIND: ClassVar[str] = "delta"
    text: str

    def to_data(self) -> dict[str, Any]:
        return {"c": self.text}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Text:
        return cls(data["c"])


@dataclass(frozen=True, slots=True)
class ToolPiece:
    KIND: ClassVar[str] = "tool"
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"i": self.index, "id": self.id, "n": self.name, "a": self.arguments}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ToolPiece:
        return cls(data["i"], data.get("id") or "", data.get("n") or "", data.get("a") or "")


@dataclass(frozen=True, slots=True)
class Done:
    KIND: ClassVar[str] = "done"
    figures: Figures
    finish: str = "stop"
    # The whole answer, for a call whose deltas were not published (a client that does not stream).
    content: str | None = None
    tool_calls: tuple[dict[str, str], ...] = ()

    def to_data(self) -> dict[str, Any]:
        data = self.figures.to_data() | {"finish": self.finish}
        if self.content is not None:
            data["content"] = self.content
        if self.tool_calls:
            data["tool_calls"] = list(self.tool_calls)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Done:
        return cls(
            Figures.from_data(data),
            data.get("finish") or "stop",
            data.get("content"),
            tuple(data.get("tool_calls", ())),
        )


@dataclass(frozen=True, slots=True)
class Failed:
    KIND: ClassVar[str] = "error"
    figures: Figures
    # An ErrorKind value, or one of the call's own: cancelled, worker_lost, internal_error.
    error_kind: str
    message: str
    # The HTTP status an OpenAI client expects for this failure.
    status: int = 502
    retry_after: float | None = None
    # Text or a tool call had reached the client before the failure.
    after_output: bool = False

    @property
    def cancelled(self) -> bool:
        return self.error_kind == "cancelled"

    def to_data(self) -> dict[str, Any]:
        return self.figures.to_data() | {
            "kind": self.error_kind,
            "message": self.message,
            "status": self.status,
            "retry_after": self.retry_after,
            "after_output": self.after_output,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Failed:
        return cls(
            Figures.from_data(data),
            data.get("kind") or "unavailable",
            data.get("message") or "the call failed",
            data.get("status") or 502,
            data.get("retry_after"),
            bool(data.get("after_output")),
        )


CallEvent = Started | Text | ToolPiece | Done | Failed
Terminal = Done | Failed

_BY_KIND: dict[bytes, type[Started] | type[Text] | type[ToolPiece] | type[Done] | type[Failed]] = {
    cls.KIND.encode(): cls for cls in (Started, Text, ToolPiece, Done, Failed)
}


def is_terminal(event: CallEvent) -> bool:
    return isinstance(event, Done | Failed)


def encode(event: CallEvent) -> tuple[str, str, str, str]:
    """The field-value pairs of the stream entry for `event`, ready for XADD."""
    return ("t", event.KIND, "d", json.dumps(event.to_data(), separators=(",", ":")))


def decode(fields: list[bytes]) -> CallEvent:
    """The event of a raw stream entry's flat [field, value, …] list, as XREAD and XRANGE give it."""
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return _BY_KIND[values[b"t"]].from_data(json.loads(values[b"d"]))
