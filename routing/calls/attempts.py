"""A call's attempts: each model tried (or left out) and how it went, as its record's trace and headers tell them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from routing.calls.spec import CallSpec


@dataclass
class Attempt:
    model: str
    provider: str
    outcome: str  # "ok", an ErrorKind value, "skipped", "cancelled", "cache_hit" or "internal_error"
    message: str = ""
    status_code: int | None = None
    retry_after: float | None = None
    elapsed_ms: int = 0
    # An escalated answer's tokens and cost (USD, as a string), booked with the call.
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


def skipped_attempts(spec: CallSpec) -> list[Attempt]:
    """The models of `spec`'s chain left out before the call ran, each as an attempt with its reason."""
    return [
        Attempt(model=s["model"], provider=s.get("provider", ""), outcome="skipped", message=s["reason"])
        for s in spec.skipped
    ]
