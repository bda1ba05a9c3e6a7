"""The cheapest models first, under a price ceiling per call: the route's, or the caller's when lower.

Settings (JSON, in the admin), both optional:

    {"max_price": "0.002", "output_tokens": 600}

- `max_price`: the most a call may be expected to cost, in USD. A caller
  may ask for less (`metadata.max_price`, or the x-switchyard-max-price
  header), never for more.
- `output_tokens`: the answer's expected length when the request sets no
  `max_tokens` (default DEFAULT_OUTPUT_TOKENS), bounded by each model's
  output limit.

Each candidate's expected cost is the request's input tokens at today's
input price plus the expected output at today's output price. Candidates
over the ceiling are left out (the trace says what each would cost); the
rest are tried cheapest first, in the route's order when equal. A model
without a price cannot be shown to fit a ceiling and is left out when there
is one, and tried last when there is none; a model an admin marked free
costs nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from billing.money import format_usd, usage_cost
from routing import tokens
from routing.catalog import CatalogModel
from routing.strategies.base import Decision, NoChoice, SettingsError, Situation

DEFAULT_OUTPUT_TOKENS = 500


class Budget:
    name = "budget"
    label = "Budget (cheapest first, under a price ceiling)"
    example: dict[str, Any] = {"max_price": "0.002", "output_tokens": 600}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - {"max_price", "output_tokens"}:
            raise SettingsError(f"Unknown setting {sorted(unknown)[0]!r}: budget takes max_price and output_tokens.")
        checked: dict[str, Any] = {}
        if "max_price" in settings:
            checked["max_price"] = str(parse_price(settings["max_price"], "max_price", SettingsError))
        if "output_tokens" in settings:
            value = settings["output_tokens"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SettingsError("'output_tokens' must be a whole number of tokens, at least 1.")
            checked["output_tokens"] = value
        return checked

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        ceilings = [Decimal(settings["max_price"])] if "max_price" in settings else []
        if situation.hints.max_price is not None:
            ceilings.append(situation.hints.max_price)
        ceiling = min(ceilings) if ceilings else None
        input_tokens = tokens.request_tokens_at_once(situation.request)
        output = situation.request.max_tokens or settings.get("output_tokens", DEFAULT_OUTPUT_TOKENS)
        costs: dict[str, Decimal | None] = {}
        for model_id in situation.candidates:
            costs[model_id] = expected_cost(situation.catalog.models[model_id], situation.now, input_tokens, output)
        fits = [m for m in situation.candidates if _fits(costs[m], ceiling)]
        skipped = tuple({"model": m, "reason": _over(costs[m], ceiling)} for m in situation.candidates if m not in fits)
        inputs = {
            "ceiling_usd": None if ceiling is None else str(ceiling),
            "input_tokens": input_tokens,
            "output_tokens": output,
            "expected_usd": {m: None if c is None else str(c) for m, c in costs.items()},
        }
        if not fits:
            raise NoChoice(
                f"No model of route `{situation.route.name}` is expected to cost at most "
                f"{format_usd(ceiling, rounded=True) if ceiling is not None else 'the ceiling'} for this call "
                f"({_cheapest(costs)})."
            )
        # Unpriced models last; otherwise cheapest first, the route's order breaking ties (sorted is stable).
        chain = tuple(sorted(fits, key=lambda m: (costs[m] is None, costs[m] or Decimal(0))))
        first = costs[chain[0]]
        under = f" under {format_usd(ceiling, rounded=True)}" if ceiling is not None else ""
        about = f" (about {format_usd(first, rounded=True)})" if first is not None else ""
        return Decision(chain=chain, reason=f"cheapest{under} → {chain[0]}{about}", inputs=inputs, skipped=skipped)


def parse_price(value: Any, name: str, error: Callable[[str], Exception]) -> Decimal:
    """A price ceiling in USD from settings or a request: a number or a decimal string, not negative."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise error(f"'{name}' must be an amount in USD, such as \"0.002\".")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise error(f"'{name}' must be an amount in USD, such as \"0.002\".") from None
    if not price.is_finite() or price < 0:
        raise error(f"'{name}' must be an amount in USD, not negative.")
    return price


def expected_cost(model: CatalogModel, now: dt.datetime, input_tokens: int, output: int) -> Decimal | None:
    """What a call of `input_tokens` and about `output` tokens of answer would cost on `model` at `now`'s prices."""
    if model.free:
        return Decimal(0)
    price = model.price_at(now)
    if price is None:
        return None
    return usage_cost(
        input_tokens=input_tokens,
        output_tokens=min(output, model.max_output_tokens),
        input_per_million=price.input_per_million,
        output_per_million=price.output_per_million,
    )


def _fits(cost: Decimal | None, ceiling: Decimal | None) -> bool:
    return ceiling is None or (cost is not None and cost <= ceiling)


def _over(cost: Decimal | None, ceiling: Decimal | None) -> str:
    if cost is None:
        return "no price: it cannot be shown to fit the price ceiling"
    return f"expected {format_usd(cost, rounded=True)}, over the ceiling of {format_usd(ceiling, rounded=True)}"


def _cheapest(costs: dict[str, Decimal | None]) -> str:
    priced = {m: c for m, c in costs.items() if c is not None}
    if not priced:
        return "none of its models has a price"
    model = min(priced, key=lambda m: priced[m])
    return f"the cheapest, {model}, would cost about {format_usd(priced[model], rounded=True)}"
