"""The normalized request every adapter takes and the events every adapter yields.

These are plain values with no wire format in them: the gateway builds a
ChatRequest from an OpenAI-style body, the playground from its form, and each
adapter translates it for its provider.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made; `arguments` is a JSON string, as on OpenAI's wire."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. System text is not a message: it is ChatRequest.system.

    `images` holds image URLs or `data:` URLs sent with a user turn.
    A `tool` message answers the tool call `tool_call_id` with `content`.
    """

    role: Role
    content: str = ""
    images: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto`, `none`, `required` (any tool), or `function` with `name` (that tool)."""

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """`text`, `json_object`, or `json_schema` with `schema` (and its `name`, `description`, `strict`)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    description: str = ""
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # The client's seed for sampling (OpenAI's `seed`); `seed` below is ours.
    sampling_seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = True
    user: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    # None: the provider's default (OpenAI's is true).
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # OpenAI's reasoning_effort, as the client sent it ("low", "high", …): the provider checks the value.
    reasoning_effort: str | None = None
    # A stable per-call string. The simulated provider derives its
    # deterministic behaviour from it; real providers ignore it.
    seed: str = ""

    def sampling(self) -> dict[str, float | int]:
        """The sampling parameters that the client set, under OpenAI's names."""
        named = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "seed": self.sampling_seed,
        }
        return {name: value for name, value in named.items() if value is not None}


class FinishReason(enum.StrEnum):
    """OpenAI's `finish_reason` vocabulary; every adapter maps into it."""

    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call `index`: `id` and `name` on its first piece, then argument fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of the whole call. `estimated` is true when any count was not reported by the provider.

    The details are parts of the totals, priced apart: `cached_input_tokens`
    (read from the provider's prompt cache) and `cache_write_tokens` (written
    to it) of `input_tokens`, `reasoning_tokens` of `output_tokens`.
    """

    input_tokens: int
    output_tokens: int
    estimated: bool = False
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason


@dataclass(frozen=True, slots=True)
class StreamError:
    """The call failed; nothing follows. `error` is a routing.providers.errors.ProviderError."""

    error: Any


Event = TextDelta | ToolCallDelta | Usage | Finish | StreamError


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything an adapter needs about one model, copied out of the registry.

    Adapters never touch the ORM: a worker builds this once per call.
    """

    provider_name: str
    provider_kind: str
    model_id: str
    upstream_name: str
    base_url: str = ""
    api_key: str = ""
    timeout_seconds: float = 60.0
    connect_timeout_seconds: float = 5.0
    context_window: int = 8192
    max_output_tokens: int = 4096
    options: dict[str, Any] = field(default_factory=dict)
    capabilities: frozenset[str] = frozenset()
