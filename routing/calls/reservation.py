"""What a capped caller's call may cost at most, and which models of its chain it may reach at all.

A call is reserved for its most expensive reachable model: the input at
that model's price of the day (bounded without tokenizing: a token is at
least one UTF-8 byte, plus what providers add for tools and images, and no
model reads more than its context window) and every output token it may
write (the request's `max_tokens`, or the model's output limit) at its
output price. Where the model's cache write price is above its input price
(Anthropic's is), the input is reserved at the cache write price: any input
token may be written to the cache. A model with no price cannot be
reserved for, so a capped caller's chain leaves it out, unless an admin
marked it free.

A cascade (routing/strategies/cascade.py) may pay for every tier's answer,
so it reserves the sum of their worst cases.

A route with soft landing, refused a reservation, leaves out the models
whose worst case is more than the cap has left, and tries once more.
"""

from __future__ import annotations

import dataclasses

from billing.money import format_usd, from_units, to_units, usage_cost
from routing import tokens
from routing.calls.spec import CallSpec, spec_extra_cost
from routing.catalog import Catalog, CatalogModel
from routing.providers.types import ChatRequest

UNPRICED = "no price, and the caller has a spend cap"
LANDED = "soft landing"

# What a provider may bill beyond the prompt's own bytes: Anthropic's hidden
# tool-use system prompt (several hundred tokens), and an image's tokens
# (up to about 1,600 at Anthropic, 765 and more at OpenAI's high detail).
TOOLS_ALLOWANCE = 1_024
IMAGE_ALLOWANCE = 2_048


class Unreservable(Exception):
    """Every model a capped caller's call could reach is unpriced."""


def spec_for_capped_caller(catalog: Catalog, spec: CallSpec) -> CallSpec:
    """`spec` with its unpriced models left out and its worst-case cost to reserve; Unreservable if none is left."""
    chain: list[str] = []
    skipped = list(spec.skipped)
    for model_id in spec.chain:
        model = catalog.models.get(model_id)
        if model is not None and (model.free or model.price_at(spec.created_at) is not None):
            chain.append(model_id)
        else:
            skipped.append({"model": model_id, "reason": UNPRICED})
    if not chain:
        names = ", ".join(spec.chain)
        raise Unreservable(
            f"{names} {'has' if len(spec.chain) == 1 else 'have'} no price, and a call by a user, team or API key "
            "with a spend cap must have one: its cost could not be held against the cap. An admin can add a "
            "price, or mark a local model free."
        )
    units = _chain_units(catalog, spec, chain)
    return dataclasses.replace(spec, chain=tuple(chain), skipped=tuple(skipped), reserved_units=units)


def spec_landed(catalog: Catalog, spec: CallSpec, room_units: int, cap: str) -> CallSpec | None:
    """`spec` without the models whose worst case is more than `room_units`, when its route has soft landing.

    None when its route has none, no model of its chain fits, or all do
    (then the shortfall was another call's: nothing to leave out).
    """
    route = catalog.routes.get(spec.route)
    if route is None or not route.soft_landing:
        return None
    input_bound = _input_bound(spec.request)
    kept: list[str] = []
    skipped = list(spec.skipped)
    for model_id in spec.chain:
        units = _worst_case_units(catalog.models[model_id], spec, input_bound)
        if units <= room_units:
            kept.append(model_id)
        else:
            left = format_usd(from_units(max(room_units, 0)), rounded=True)
            reason = f"{LANDED}: it may cost {format_usd(from_units(units))}, more than the {left} left on {cap}"
            skipped.append({"model": model_id, "reason": reason})
    if not kept or len(kept) == len(spec.chain):
        return None
    units = _chain_units(catalog, spec, kept)
    return dataclasses.replace(spec, chain=tuple(kept), skipped=tuple(skipped), reserved_units=units)


def landed_models(spec: CallSpec) -> list[str]:
    """The models a soft landing left out of `spec`'s chain."""
    return [s["model"] for s in spec.skipped if s["reason"].startswith(LANDED)]


def _chain_units(catalog: Catalog, spec: CallSpec, chain: list[str]) -> int:
    """The most a call along `chain` may cost: its dearest model's worst case, or for a cascade every tier's."""
    input_bound = _input_bound(spec.request)
    worst = [_worst_case_units(catalog.models[m], spec, input_bound) for m in chain]
    # A cascade pays for each answer it escalates from; a fallback pays only for the one that answered.
    answers = sum(worst) if spec.checks else max(worst)
    # What was paid before the call ran (a classifier) is booked with it, so it is held as well.
    return answers + to_units(spec_extra_cost(spec))


def _input_bound(request: ChatRequest) -> int:
    images = sum(len(message.images) for message in request.messages)
    allowance = images * IMAGE_ALLOWANCE + (TOOLS_ALLOWANCE if request.tools else 0)
    return tokens.request_tokens_upper_bound(request) + allowance


def _worst_case_units(model: CatalogModel, spec: CallSpec, input_bound: int) -> int:
    if model.free:
        return 0
    price = model.price_at(spec.created_at)
    assert price is not None
    max_output = model.max_output_tokens
    if spec.request.max_tokens is not None:
        max_output = min(max_output, spec.request.max_tokens)
    cost = usage_cost(
        input_tokens=min(input_bound, model.context_window),
        output_tokens=max_output,
        input_per_million=max(price.input_per_million, price.cache_write_price),
        output_per_million=price.output_per_million,
    )
    return to_units(cost)
