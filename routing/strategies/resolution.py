"""From what a client asked for (a model id or a route name) to the chain a call walks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from routing.catalog import Catalog
from routing.providers.types import ChatRequest
from routing.strategies.capabilities import needed_capabilities


class ModelNotFound(Exception):
    pass


class NoCapableModel(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Resolution:
    route: str
    chain: tuple[str, ...]
    skipped: tuple[dict[str, str], ...]
    request: ChatRequest


def resolve(catalog: Catalog, requested: str, request: ChatRequest) -> Resolution:
    model = catalog.models.get(requested)
    if model is not None:
        if not model.usable:
            raise ModelNotFound(f"The model `{requested}` is disabled.")
        return Resolution(route="", chain=(requested,), skipped=(), request=request)
    route = catalog.routes.get(requested)
    if route is None or not route.enabled:
        raise ModelNotFound(f"The model `{requested}` does not exist or you do not have access to it.")
    request = _with_route_defaults(request, route.temperature, route.max_tokens, route.system_prompt)
    needed = needed_capabilities(request)
    chain: list[str] = []
    skipped: list[dict[str, str]] = []
    for model_id in route.chain:
        candidate = catalog.models.get(model_id)
        if candidate is None or not candidate.usable:
            skipped.append({"model": model_id, "reason": "disabled"})
        elif missing := needed - candidate.capabilities:
            skipped.append({"model": model_id, "reason": "lacks " + ", ".join(sorted(missing))})
        else:
            chain.append(model_id)
    if not chain:
        what = ", ".join(sorted(needed)) or "an enabled model"
        raise NoCapableModel(f"No model of route `{requested}` can take this request (it needs {what}).")
    return Resolution(route=route.name, chain=tuple(chain), skipped=tuple(skipped), request=request)


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
