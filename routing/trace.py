"""A call's routing trace (UsageRecord.trace) read back for people: the routes it went through and why.

The trace is written at booking (billing/services.py) from the call's spec:
the chain tried, the models left out with their reasons, and the routing
(routing/strategies/resolution.py: each route's strategy, its reason and
inputs, the next route under "then", and any personal data found).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RouteStep:
    route: str
    strategy: str
    reason: str
    # The strategy's inputs, as indented JSON.
    inputs: str


@dataclass(frozen=True)
class TraceView:
    steps: list[RouteStep]
    chain: list[str]
    skipped: list[dict[str, str]]
    personal_data: list[str]
    tagged_sensitive: bool

    @property
    def sensitive(self) -> bool:
        return bool(self.personal_data) or self.tagged_sensitive


def trace_view(trace: dict[str, Any]) -> TraceView:
    """The trace of one call, as the record pages show it; an empty view for a call that named a model."""
    steps = []
    routing = trace.get("routing") or {}
    sensitivity = routing.get("sensitivity") or {}
    while routing:
        inputs = routing.get("inputs") or {}
        steps.append(
            RouteStep(
                route=str(routing.get("route", "")),
                strategy=str(routing.get("strategy", "")),
                reason=str(routing.get("reason", "")),
                inputs=json.dumps(inputs, indent=2, sort_keys=True) if inputs else "",
            )
        )
        routing = routing.get("then") or {}
    return TraceView(
        steps=steps,
        chain=[str(model) for model in trace.get("chain", [])],
        skipped=[dict(item) for item in trace.get("skipped", [])],
        personal_data=[str(kind).replace("_", " ") for kind in sensitivity.get("found", [])],
        tagged_sensitive=bool(sensitivity.get("tagged")),
    )
