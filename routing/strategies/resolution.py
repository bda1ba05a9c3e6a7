"""From what a client asked for (a model id or a route name) to the chain a call walks.

A route's chain is first narrowed to the models that are enabled and can take
the request; the route's strategy (routing/strategies/base.py) then chooses
among them, or sends the call to another route, at most MAX_HOPS deep.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.catalog import Catalog, CatalogRoute
from routing.providers.types import ChatRequest
from routing.strategies.base import Hints, NoChoice, Situation
from routing.strategies.capabilities import needed_capabilities
from routing.strategies.registry import STRATEGIES
from routing.strategies.sensitivity import SENSITIVE_TAG, find_personal_data, keeps_no_data, request_texts

logger = logging.getLogger(__name__)

MAX_HOPS = 3
NO_HINTS = Hints()


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """Why a call may go only to providers that keep no data: the personal data found, the caller's tag."""

    found: tuple[str, ...] = ()
    tagged: bool = False

    def __bool__(self) -> bool:
        return bool(self.found) or self.tagged

    def words(self) -> str:
        if self.found:
            return f"holds personal data ({', '.join(kind.replace('_', ' ') for kind in self.found)})"
        return "is tagged sensitive"


class ModelNotFound(Exception):
    pass


class NoCapableModel(Exception):
    """No model that was asked for can take the request; `param` and `code` are OpenAI's for the fault."""

    def __init__(self, message: str, param: str, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


# The field of a request that needs each capability (OpenAI names it as the
# param of its "Unsupported parameter" error), and the capability in words.
_NEEDED_BY = {
    "tools": ("tools", "tools"),
    "json": ("response_format", "JSON output"),
    "vision": ("messages", "images"),
}


@dataclass(frozen=True, slots=True)
class Resolution:
    route: str
    chain: tuple[str, ...]
    skipped: tuple[dict[str, str], ...]
    request: ChatRequest
    # How the route's strategy chose (strategy, reason, inputs, and the next route's under "then"); {} for a model.
    routing: dict[str, Any] = field(default_factory=dict)
    # What each answer must pass before it is sent, for a cascade (Decision.checks).
    checks: dict[str, Any] = field(default_factory=dict)


def resolve(
    catalog: Catalog,
    requested: str,
    request: ChatRequest,
    *,
    hints: Hints = NO_HINTS,
    caller: str = "",
    now: dt.datetime | None = None,
    personal_data: tuple[str, ...] | None = None,
    health: Mapping[str, Any] | None = None,
    standings: Mapping[str, Any] | None = None,
    classifications: Mapping[str, Any] | None = None,
) -> Resolution:
    """`personal_data`: what sensitivity.find_personal_data found in the request, when the caller looked already.

    `health`: the models' recent measurements (routing/model_health.py), for the strategies that read them;
    `standings`: the caller's arena standings (routing/arena_standings.py), likewise;
    `classifications`: classifier routes' answers by route name (routing/calls/classify.py).
    """
    model = catalog.models.get(requested)
    if model is not None:
        if not model.usable:
            raise ModelNotFound(f"The model `{requested}` is disabled.")
        # Asked for by name, a model is not swapped for another: it refuses
        # what it cannot do, as OpenAI does, rather than fail upstream or
        # answer without it.
        if missing := needed_capabilities(request) - model.capabilities:
            param, capability = _NEEDED_BY[min(missing)]
            raise NoCapableModel(
                f"Unsupported parameter: '{param}' is not supported with this model "
                f"(`{requested}` does not support {capability}).",
                param,
                "unsupported_parameter",
            )
        if SENSITIVE_TAG in hints.tags and not keeps_no_data(model):
            raise NoCapableModel(
                f"This request is tagged sensitive, and the provider of `{requested}` is not marked as keeping no "
                "data: it was not sent. Ask for a model of a provider that keeps no data, or a local one.",
                "model",
                "sensitive_data",
            )
        return Resolution(route="", chain=(requested,), skipped=(), request=request)
    route = catalog.routes.get(requested)
    if route is None or not route.enabled:
        raise ModelNotFound(f"The model `{requested}` does not exist or you do not have access to it.")
    when = now or dt.datetime.now(dt.UTC)
    if personal_data is None:
        personal_data = find_personal_data(request_texts(request))
    sensitivity = Sensitivity(personal_data, SENSITIVE_TAG in hints.tags)
    resolution = _resolve_route(
        catalog,
        route,
        request,
        hints=hints,
        caller=caller,
        now=when,
        hops=(),
        sensitivity=sensitivity,
        health=health or {},
        standings=standings or {},
        classifications=classifications or {},
    )
    if sensitivity:
        logger.info(
            "route %s: the request %s; sent only to providers that keep no data", route.name, sensitivity.words()
        )
        routing = {
            **resolution.routing,
            "sensitivity": {"found": list(sensitivity.found), "tagged": sensitivity.tagged},
        }
        return dataclasses.replace(resolution, routing=routing)
    return resolution


def _resolve_route(
    catalog: Catalog,
    route: CatalogRoute,
    request: ChatRequest,
    *,
    hints: Hints,
    caller: str,
    now: dt.datetime,
    hops: tuple[str, ...],
    sensitivity: Sensitivity,
    health: Mapping[str, Any],
    standings: Mapping[str, Any],
    classifications: Mapping[str, Any],
) -> Resolution:
    request = _with_route_defaults(request, route.temperature, route.max_tokens, route.system_prompt)
    needed = needed_capabilities(request)
    candidates: list[str] = []
    skipped: list[dict[str, str]] = []
    for model_id in route.chain:
        candidate = catalog.models.get(model_id)
        if candidate is None or not candidate.usable:
            skipped.append({"model": model_id, "reason": "disabled"})
        elif missing := needed - candidate.capabilities:
            skipped.append({"model": model_id, "reason": "lacks " + ", ".join(sorted(missing))})
        else:
            candidates.append(model_id)
    strategy = STRATEGIES.get(route.strategy)
    if strategy is None:
        raise NoCapableModel(
            f"Route `{route.name}` cannot be used: {route.settings.get('error', 'it has no strategy')}. "
            "An admin can correct its strategy settings.",
            "model",
            "route_misconfigured",
        )
    if not candidates and route.strategy != "rules":
        what = ", ".join(sorted(needed)) or "an enabled model"
        raise NoCapableModel(
            f"No model of route `{route.name}` can take this request (it needs {what}).", "model", "model_not_supported"
        )
    situation = Situation(
        catalog=catalog,
        route=route,
        request=request,
        hints=hints,
        candidates=tuple(candidates),
        caller=caller,
        now=now,
        health=health,
        standings=standings,
        classifications=classifications,
    )
    try:
        decision = strategy.decide(situation, route.settings)
    except NoChoice as exc:
        raise NoCapableModel(str(exc), "model", "model_not_supported") from None
    routing: dict[str, Any] = {
        "route": route.name,
        "strategy": strategy.name,
        "reason": decision.reason,
        "inputs": decision.inputs,
    }
    skipped.extend(decision.skipped)
    if not decision.route:
        chain = decision.chain
        if sensitivity:
            chain = tuple(m for m in decision.chain if keeps_no_data(catalog.models[m]))
            reason = f"the request {sensitivity.words()}: its provider may keep data"
            skipped.extend({"model": m, "reason": reason} for m in decision.chain if m not in chain)
            if decision.chain and not chain:
                raise NoCapableModel(
                    f"This request {sensitivity.words()}, and no model that route `{route.name}` would use runs on "
                    "a provider that keeps no data or locally: it was not sent anywhere.",
                    "model",
                    "sensitive_data",
                )
        if not chain:
            raise NoCapableModel(
                f"No model of route `{route.name}` can take this request.", "model", "model_not_supported"
            )
        return Resolution(
            route=route.name,
            chain=chain,
            skipped=tuple(skipped),
            request=request,
            routing=routing,
            checks=decision.checks,
        )
    visited = (*hops, route.name)
    target = catalog.routes.get(decision.route)
    if target is None or not target.enabled:
        raise NoCapableModel(
            f"Route `{route.name}` sends this call to route `{decision.route}`, which is disabled.",
            "model",
            "model_not_supported",
        )
    if decision.route in visited or len(visited) > MAX_HOPS:
        raise NoCapableModel(
            f"Routes send this call round in a loop or too deep ({' → '.join((*visited, decision.route))}). "
            "An admin can correct their rules.",
            "model",
            "route_misconfigured",
        )
    then = _resolve_route(
        catalog,
        target,
        request,
        hints=hints,
        caller=caller,
        now=now,
        hops=visited,
        sensitivity=sensitivity,
        health=health,
        standings=standings,
        classifications=classifications,
    )
    return Resolution(
        route=route.name,
        chain=then.chain,
        skipped=(*skipped, *then.skipped),
        request=then.request,
        routing={**routing, "then": then.routing},
        checks=then.checks,
    )


def reasons(routing: dict[str, Any]) -> str:
    """The strategies' reasons along the routes a call went through, in one line."""
    return "; ".join(f"{step['route']}: {step['reason']}" for step in route_steps(routing))


def _with_route_defaults(
    request: ChatRequest,
    temperature: float | None,
    max_tokens: int | None,
    system_prompt: str,
) -> ChatRequest:
    system = request.system
    if system_prompt:
        system = f"{system_prompt}\n\n{system}" if system else system_prompt
    return dataclasses.replace(
        request,
        system=system,
        temperature=request.temperature if request.temperature is not None else temperature,
        max_tokens=request.max_tokens or max_tokens,
    )


def route_steps(routing: dict[str, Any]) -> list[dict[str, Any]]:
    """Each route a call went through, outermost first: its strategy, reason and inputs."""
    steps = []
    while routing:
        steps.append(routing)
        routing = routing.get("then", {})
    return steps
