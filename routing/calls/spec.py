"""What a web process hands to a worker: one call, fully described, as JSON.

The spec travels in the Celery message, so a worker on any host can run the
call without reading anything the web process wrote first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from routing.providers.types import (
    ChatRequest,
    Message,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)


@dataclass(frozen=True, slots=True)
class CallSpec:
    call_id: str
    created_at: dt.datetime
    requested: str
    chain: tuple[str, ...]
    request: ChatRequest
    route: str = ""
    user_id: int | None = None
    team_id: int | None = None
    api_key_id: int | None = None
    source: str = "api"
    # When false the worker publishes only the final result, not each delta:
    # a non-streaming client reads one event instead of hundreds.
    publish_deltas: bool = True
    # Models of the chain left out before the call, with the reason (trace).
    skipped: tuple[dict[str, str], ...] = field(default_factory=tuple)
    # The worst-case cost reserved against the caller's caps, in units of
    # 10^-10 USD (billing/caps/reservations.py); 0 for a caller with no cap.
    reserved_units: int = 0
    # How the route's strategy chose the chain (resolution.Resolution.routing), for the trace.
    routing: dict[str, Any] = field(default_factory=dict)
    # A cascade's checks (routing/calls/answer_checks.py): every answer but the last model's is held until it passes.
    checks: dict[str, Any] = field(default_factory=dict)
    # How long the call may wait for the circuit of its chain's last model (Hints.circuit_wait), in seconds.
    circuit_wait: float = 0.0
    # What the call paid before it ran, booked with it: a classifier's call (routing/calls/classify.py).
    extra_costs: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # The response cache's entry for this call (routing/resilience/cache.py), and its TTL; "": not cached.
    cache_key: str = ""
    cache_ttl: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _plain(self)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallSpec:
        return cls(
            call_id=data["call_id"],
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            requested=data["requested"],
            chain=tuple(data["chain"]),
            request=chat_request_from_json(data["request"]),
            route=data.get("route", ""),
            user_id=data.get("user_id"),
            team_id=data.get("team_id"),
            api_key_id=data.get("api_key_id"),
            source=data.get("source", "api"),
            publish_deltas=data.get("publish_deltas", True),
            skipped=tuple(data.get("skipped", ())),
            reserved_units=data.get("reserved_units", 0),
            routing=data.get("routing", {}),
            checks=data.get("checks", {}),
            circuit_wait=data.get("circuit_wait", 0.0),
            extra_costs=tuple(data.get("extra_costs", ())),
            cache_key=data.get("cache_key", ""),
            cache_ttl=data.get("cache_ttl", 0),
        )


def spec_extra_cost(spec: CallSpec) -> Decimal:
    """What the call paid before it ran, in USD (an unpriced classifier's call counts nothing)."""
    return sum((Decimal(c["cost_usd"]) for c in spec.extra_costs if c.get("cost_usd")), Decimal(0))


def chat_request_from_json(data: dict[str, Any]) -> ChatRequest:
    tool_choice = data.get("tool_choice")
    response_format = data.get("response_format")
    return ChatRequest(
        messages=tuple(
            Message(
                role=m["role"],
                content=m.get("content", ""),
                images=tuple(m.get("images", ())),
                tool_calls=tuple(ToolCall(**c) for c in m.get("tool_calls", ())),
                tool_call_id=m.get("tool_call_id"),
                name=m.get("name"),
            )
            for m in data["messages"]
        ),
        system=data.get("system"),
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        frequency_penalty=data.get("frequency_penalty"),
        presence_penalty=data.get("presence_penalty"),
        sampling_seed=data.get("sampling_seed"),
        max_tokens=data.get("max_tokens"),
        stop=tuple(data.get("stop", ())),
        stream=data.get("stream", True),
        user=data.get("user"),
        tools=tuple(ToolSpec(**t) for t in data.get("tools", ())),
        tool_choice=ToolChoice(**tool_choice) if tool_choice else None,
        parallel_tool_calls=data.get("parallel_tool_calls"),
        reasoning_effort=data.get("reasoning_effort"),
        response_format=ResponseFormat(**response_format) if response_format else None,
        seed=data.get("seed", ""),
    )


def _plain(value: Any) -> Any:
    """dataclasses.asdict for the frozen, JSON-ready values of a spec, at about half its cost.

    asdict deep-copies every leaf, which these immutable values do not need;
    on the web's hot path every call's spec goes through here.
    """
    if dataclasses.is_dataclass(value):
        cls: type = type(value)  # plain `type`: mypy does not take a type[...] as Hashable, as the cache needs
        return {name: _plain(getattr(value, name)) for name in _field_names(cls)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
