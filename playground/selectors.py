"""Reads for the playground: a user's runs, the model picker, the cost estimate of a prompt."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Prefetch, QuerySet

from billing.money import format_usd, usage_cost
from playground.models import PlaygroundRun, RunPanel
from routing import tokens
from routing.catalog import Catalog, CatalogModel, PriceRow
from routing.providers.types import ChatRequest, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

# Without a max_tokens, the estimate of the answers assumes this length.
ASSUMED_ANSWER_TOKENS = 500


def runs_of_user(*, user: AbstractBaseUser) -> QuerySet[PlaygroundRun]:
    """The user's own runs, newest first, with panels loaded. Nobody else's, teammates' included."""
    panels = RunPanel.objects.order_by("position")
    return PlaygroundRun.objects.filter(user_id=user.pk).prefetch_related(Prefetch("panels", queryset=panels))


def chat_request_for(
    *, prompt: str, system_prompt: str = "", temperature: float | None = None, max_tokens: int | None = None
) -> ChatRequest:
    return ChatRequest(
        messages=(Message(role="user", content=prompt),),
        system=system_prompt or None,
        temperature=temperature,
        max_tokens=max_tokens,
    )


@dataclass(frozen=True)
class PickerOption:
    """One choice of the model picker: a usable model, or an enabled route with its chain."""

    value: str
    is_route: bool
    title: str
    detail: str
    chain: tuple[str, ...]
    input_price: str
    output_price: str
    context_window: int
    search_text: str


def route_models(catalog: Catalog, name: str) -> list[CatalogModel]:
    """The usable models of route `name`'s chain, in order."""
    route = catalog.routes[name]
    return [catalog.models[m] for m in route.chain if m in catalog.models and catalog.models[m].usable]


def pricing_model(catalog: Catalog, value: str) -> CatalogModel | None:
    """The model whose prices stand for `value`: the model itself, or a route's first usable model."""
    if value in catalog.models:
        return catalog.models[value]
    if value in catalog.routes:
        models = route_models(catalog, value)
        return models[0] if models else None
    return None


def context_window_of(catalog: Catalog, value: str) -> int:
    """The longest prompt `value` can take: a route falls back to larger windows on its chain."""
    if value in catalog.models:
        return catalog.models[value].context_window
    return max((m.context_window for m in route_models(catalog, value)), default=0)


def _price(model: CatalogModel | None, at: dt.datetime) -> PriceRow | None:
    return model.price_at(at) if model else None


def picker_options(*, catalog: Catalog, at: dt.datetime) -> list[PickerOption]:
    """Enabled routes with at least one usable model (by name), then usable models (by id)."""
    options = []
    for route in sorted(catalog.routes.values(), key=lambda r: r.name):
        models = route_models(catalog, route.name) if route.enabled else []
        if not models:
            continue
        price = _price(models[0], at)
        chain = tuple(m.public_id for m in models)
        options.append(
            PickerOption(
                value=route.name,
                is_route=True,
                title=route.name,
                detail=route.description,
                chain=chain,
                input_price=format_usd(price.input_per_million) if price else "—",
                output_price=format_usd(price.output_per_million) if price else "—",
                context_window=max(m.context_window for m in models),
                search_text=f"{route.name} {route.description} {' '.join(chain)} route".lower(),
            )
        )
    for model in sorted(catalog.models.values(), key=lambda m: m.public_id):
        if not model.usable:
            continue
        price = _price(model, at)
        options.append(
            PickerOption(
                value=model.public_id,
                is_route=False,
                title=model.public_id,
                detail=model.display_name if model.display_name != model.public_id else model.provider_name,
                chain=(),
                input_price=format_usd(price.input_per_million) if price else "—",
                output_price=format_usd(price.output_per_million) if price else "—",
                context_window=model.context_window,
                search_text=f"{model.public_id} {model.display_name} {model.provider_name}".lower(),
            )
        )
    return options


@dataclass(frozen=True)
class EstimateLine:
    value: str
    prompt_cost: str
    answer_cost: str
    too_long: bool
    priced: bool


@dataclass(frozen=True)
class Estimate:
    prompt_tokens: int
    answer_tokens: int
    answer_tokens_assumed: bool
    lines: list[EstimateLine]
    prompt_cost: str
    answer_cost: str
    total: str
    unpriced: list[str]
    too_long: list[str]


def run_estimate(
    *,
    catalog: Catalog,
    at: dt.datetime,
    prompt: str,
    system_prompt: str,
    selections: list[str],
    max_tokens: int | None,
) -> Estimate:
    """The cost of sending this prompt to each selection, and of answers of `max_tokens` (or an assumed length).

    Unknown or unusable selections are left out; a route is priced at its first usable model.
    """
    prompt_tokens = tokens.estimate_request_tokens(chat_request_for(prompt=prompt, system_prompt=system_prompt))
    answer_tokens = max_tokens or ASSUMED_ANSWER_TOKENS
    lines = []
    prompt_total = answer_total = Decimal(0)
    for value in selections:
        model = pricing_model(catalog, value)
        if model is None or not model.usable:
            continue
        too_long = prompt_tokens > context_window_of(catalog, value)
        price = _price(model, at)
        if price is None:
            lines.append(EstimateLine(value, "—", "—", too_long, priced=False))
            continue
        answer = min(answer_tokens, model.max_output_tokens)
        in_price, out_price = price.input_per_million, price.output_per_million
        prompt_cost = usage_cost(
            input_tokens=prompt_tokens, output_tokens=0, input_per_million=in_price, output_per_million=out_price
        )
        answer_cost = usage_cost(
            input_tokens=0, output_tokens=answer, input_per_million=in_price, output_per_million=out_price
        )
        prompt_total += prompt_cost
        answer_total += answer_cost
        lines.append(EstimateLine(value, format_usd(prompt_cost), format_usd(answer_cost), too_long, priced=True))
    return Estimate(
        prompt_tokens=prompt_tokens,
        answer_tokens=answer_tokens,
        answer_tokens_assumed=max_tokens is None,
        lines=lines,
        prompt_cost=format_usd(prompt_total),
        answer_cost=format_usd(answer_total),
        total=format_usd(prompt_total + answer_total),
        unpriced=[line.value for line in lines if not line.priced],
        too_long=[line.value for line in lines if line.too_long],
    )


def route_chains(*, catalog: Catalog, names: list[str]) -> dict[str, tuple[str, ...]]:
    """name -> chain (all its models, as configured) for those of `names` that are routes."""
    return {name: catalog.routes[name].chain for name in names if name in catalog.routes and name not in catalog.models}
