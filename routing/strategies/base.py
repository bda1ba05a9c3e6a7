"""What a routing strategy is: the contract every strategy of routing/strategies/ keeps.

A route names a strategy and holds its settings (`Route.strategy`,
`Route.settings`, edited in the admin). When a call asks for the route, the
web process resolves it (resolution.py): the route's chain is narrowed to
the models that are enabled and can take the request (the candidates), then
the strategy decides, from the request and its hints, which of them to try
and in which order. The call still falls back along what it returns.

A strategy is one object with:

- `name` and `label`: its key in `Route.strategy` and its name in the admin;
- `example`: settings it takes, shown in the admin as a starting point;
- `check_settings(settings, names)`: the settings in canonical form, or
  SettingsError saying what is wrong, in words for the admin's form (`names`
  are the models and routes that exist, for settings that name them);
- `decide(situation, settings)`: a Decision. It must be fast and local (no
  network, no database: it runs on every call, in the web process's event
  loop) and deterministic for the same situation.

A strategy never invents a model: its chain is drawn from the candidates,
or it sends the call to another route (Decision.route), which is resolved
in its turn with its own strategy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from routing.catalog import Catalog, CatalogRoute
from routing.providers.types import ChatRequest


class SettingsError(ValueError):
    """A route's strategy settings cannot be used; the message says why, for the admin."""


class NoChoice(Exception):
    """The strategy finds no model it may send this call to; the message says why, for the caller."""


@dataclass(frozen=True, slots=True)
class Hints:
    """What the caller said about the call, beyond the request itself (`metadata`, x-switchyard-* headers)."""

    tags: frozenset[str] = frozenset()
    # The most the caller will pay for this call, in USD.
    max_price: Decimal | None = None
    # Keeps a conversation on one model, where a strategy splits calls.
    session: str = ""
    # How long the call may wait, in seconds, for the circuit of its last model to let it through.
    circuit_wait: float = 0.0
    # The response cache (routing/resilience/cache.py): asked for (True), refused (False), or as the route says.
    cache: bool | None = None


@dataclass(frozen=True, slots=True)
class Situation:
    catalog: Catalog
    route: CatalogRoute
    request: ChatRequest
    hints: Hints
    # The route's models that are enabled and can take the request, in the route's order.
    candidates: tuple[str, ...]
    # Who calls ("user:7", "team:3", "key:12"): a split's stickiness falls back to it.
    caller: str
    now: dt.datetime
    # How models have been doing lately (routing/model_health.py), when a route's strategy reads it.
    health: Mapping[str, Any] = field(default_factory=dict)
    # The caller's arena standings by prompt category (routing/arena_standings.py), when a route's strategy reads them.
    standings: Mapping[str, Any] = field(default_factory=dict)
    # Route name → its classifier's answer (routing/calls/classify.py), made before resolving.
    classifications: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    # The models to try, in order: drawn from the candidates.
    chain: tuple[str, ...] = ()
    # Why, in one line, for a response header and the playground.
    reason: str = ""
    # What the decision was made from, for the call's trace.
    inputs: dict[str, Any] = field(default_factory=dict)
    # Candidates left out, with the reason.
    skipped: tuple[dict[str, str], ...] = ()
    # Another route to resolve instead (chain is then empty).
    route: str = ""
    # The checks each answer but the last tier's must pass before it is sent (strategies/cascade.py); {} for none.
    checks: dict[str, Any] = field(default_factory=dict)


class Strategy(Protocol):
    name: str
    label: str
    # Settings that work, shown to the admin beside the settings field.
    example: dict[str, Any]

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]: ...

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision: ...


def first_then_rest(situation: Situation, model: str, inputs: dict[str, Any], reason: str) -> Decision:
    """`model` first, then the other candidates in the route's order; the route's order when `model` cannot take it."""
    if model not in situation.candidates:
        return Decision(
            chain=situation.candidates, reason=f"{reason}, which cannot take it: the route's order", inputs=inputs
        )
    return Decision(chain=(model, *(m for m in situation.candidates if m != model)), reason=reason, inputs=inputs)
