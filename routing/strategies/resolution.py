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


def resolve(catalog: Catalog, requested: str, request: ChatRequest) -> Resolution:
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
        raise NoCapableModel(
            f"No model of route `{requested}` can take this request (it needs {what}).", "model", "model_not_supported"
        )
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
