"""The cheapest model within a margin of the best, by the caller's arena votes for the prompt's kind of task.

Settings (JSON, in the admin):

    {"default": "sim/sage-pro", "margin": 50, "min_votes": 10, "output_tokens": 500}

- `default` (required): the model to use while the votes are too few to
  say; one of the route's models;
- `margin`: how many arena points below the best a model may score and
  still count as good enough (default 50; 400 points is 10:1 odds, so 50
  means the best wins about 57% of their duels);
- `min_votes`: the votes a category needs before they decide (default 10);
- `output_tokens`: the answer's expected length when the request sets no
  `max_tokens`, to price the candidates (as the budget strategy does).

The prompt's category is the local classifier's (complexity.classify_prompt,
the one the playground files votes under). The standings are those the
playground publishes (routing/arena_standings.py): the caller's team's
votes, or a teamless caller's own. With at least `min_votes` votes in the
category, the route's models ranked there whose score is within `margin` of
the best are tried cheapest first; then the other ranked models, best
first; then the unranked ones, in the route's order. With fewer votes, the
default comes first and the rest follow in the route's order.

The margin is read on the scores, not their intervals: with few votes the
intervals are wide, which `min_votes` answers by not trusting the votes at
all until there are enough.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from routing import tokens
from routing.strategies.base import Decision, SettingsError, Situation
from routing.strategies.budget import DEFAULT_OUTPUT_TOKENS, expected_cost
from routing.strategies.complexity import classify_prompt
from routing.strategies.prompt_facts import last_user_text

DEFAULT_MARGIN = 50
DEFAULT_MIN_VOTES = 10


class Quality:
    name = "quality"
    label = "Quality (cheapest within a margin of the best, by arena votes)"
    example: dict[str, Any] = {"default": "sim/sage-pro", "margin": 50, "min_votes": 10}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - {"default", "margin", "min_votes", "output_tokens"}:
            raise SettingsError(
                f"Unknown setting {sorted(unknown)[0]!r}: quality takes default, margin, min_votes and output_tokens."
            )
        default = settings.get("default")
        if not isinstance(default, str) or not default:
            raise SettingsError("'default' must name the model to use while votes are few, such as \"sim/sage-pro\".")
        if default not in names:
            raise SettingsError(f"'default': there is no model {default!r}.")
        checked: dict[str, Any] = {
            "default": default,
            "margin": _whole(settings, "margin", DEFAULT_MARGIN, least=0),
            "min_votes": _whole(settings, "min_votes", DEFAULT_MIN_VOTES, least=1),
        }
        if "output_tokens" in settings:
            checked["output_tokens"] = _whole(settings, "output_tokens", DEFAULT_OUTPUT_TOKENS, least=1)
        return checked

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        category = classify_prompt(last_user_text(situation.request))
        standing = situation.standings.get("categories", {}).get(category, {})
        votes = standing.get("votes", 0)
        inputs: dict[str, Any] = {"category": category, "votes": votes, "min_votes": settings["min_votes"]}
        if votes < settings["min_votes"]:
            return _by_default(situation, settings["default"], inputs, f"{category}: {votes} votes, too few")
        scores = {m: standing["models"][m]["score"] for m in situation.candidates if m in standing.get("models", {})}
        if not scores:
            return _by_default(situation, settings["default"], inputs, f"{category}: none of its models voted on")
        best = max(scores, key=lambda m: scores[m])
        floor = scores[best] - settings["margin"]
        good = [m for m in situation.candidates if m in scores and scores[m] >= floor]
        costs = _expected_costs(situation, good, settings)
        # Unpriced models last among the good ones; sorted is stable, so the route's order breaks ties.
        good.sort(key=lambda m: (costs[m] is None, costs[m] or Decimal(0)))
        others = sorted((m for m in scores if m not in good), key=lambda m: -scores[m])
        unranked = [m for m in situation.candidates if m not in scores]
        chain = (*good, *others, *unranked)
        inputs |= {
            "margin": settings["margin"],
            "scores": {m: round(s, 1) for m, s in scores.items()},
            "best": best,
            "within_margin": list(good),
            "expected_usd": {m: None if c is None else str(c) for m, c in costs.items()},
        }
        first = chain[0]
        if first == best:
            reason = f"{category}: {first} is the best ({scores[first]:.0f} over {votes} votes), and cheapest"
        else:
            reason = (
                f"{category}: {first} ({scores[first]:.0f}) within {settings['margin']} of the best, "
                f"{best} ({scores[best]:.0f}), and cheaper"
            )
        return Decision(chain=chain, reason=f"{reason} → {first}", inputs=inputs)


def _by_default(situation: Situation, default: str, inputs: dict[str, Any], why: str) -> Decision:
    if default not in situation.candidates:
        return Decision(
            chain=situation.candidates,
            reason=f"{why}; the default {default} cannot take it: the route's order",
            inputs=inputs | {"default": default},
        )
    chain = (default, *(m for m in situation.candidates if m != default))
    return Decision(chain=chain, reason=f"{why}: the default → {default}", inputs=inputs | {"default": default})


def _expected_costs(situation: Situation, models: list[str], settings: dict[str, Any]) -> dict[str, Decimal | None]:
    input_tokens = tokens.request_tokens_at_once(situation.request)
    output = situation.request.max_tokens or settings.get("output_tokens", DEFAULT_OUTPUT_TOKENS)
    return {m: expected_cost(situation.catalog.models[m], situation.now, input_tokens, output) for m in models}


def _whole(settings: dict[str, Any], name: str, default: int, *, least: int) -> int:
    value = settings.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise SettingsError(f"'{name}' must be a whole number, at least {least}.")
    return value
