"""A small, cheap model reads the prompt and names its category; each category has its model.

Settings (JSON, in the admin):

    {"model": "sim/swift-mini",
     "categories": {"coding": "sim/atlas", "writing": "sim/sage-pro", "quick": "sim/swift-mini"},
     "timeout_ms": 2000}

- `model` (required): the model that classifies, any registered one (a
  local Ollama model costs nothing);
- `categories` (required, 2 to 12): category name → the model that answers
  it; the first is the default;
- `timeout_ms`: how long the classifier may take (default 2000, at most
  10000); past it, or if it fails or names no category, the local scorer
  decides (complexity.classify_prompt: coding, reasoning, writing or
  quick), and the default category when its answer is not a category.

The classification is made before the route is resolved (routing/calls/
classify.py: a model call the web process makes, since the chain depends
on it), and cached in Redis for identical prompts; `decide` stays local and
only reads it. The classifier's cost is booked with the call. Without a
classification (a call pushed again after a crash) the local scorer decides.
"""

from __future__ import annotations

import re
from typing import Any

from routing.strategies.base import Decision, SettingsError, Situation
from routing.strategies.complexity import classify_prompt
from routing.strategies.prompt_facts import last_user_text

DEFAULT_TIMEOUT_MS = 2000
MAX_TIMEOUT_MS = 10_000
MAX_CATEGORIES = 12
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,29}$")
LOCAL = "local scorer"


class Classifier:
    name = "classifier"
    label = "Classifier (a small model names the prompt's category)"
    example: dict[str, Any] = {
        "model": "sim/atlas",
        "categories": {"coding": "sim/atlas", "quick": "sim/sage-pro"},
        "timeout_ms": 2000,
    }

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - {"model", "categories", "timeout_ms"}:
            raise SettingsError(
                f"Unknown setting {sorted(unknown)[0]!r}: classifier takes model, categories and timeout_ms."
            )
        model = settings.get("model")
        if not isinstance(model, str) or model not in names:
            raise SettingsError("'model' must name the model that classifies, such as \"sim/swift-mini\".")
        categories = settings.get("categories")
        if not isinstance(categories, dict) or not 2 <= len(categories) <= MAX_CATEGORIES:
            raise SettingsError(
                f"'categories' must map 2 to {MAX_CATEGORIES} category names to models, "
                'such as {"coding": "sim/atlas", "quick": "sim/swift-mini"}.'
            )
        for category, target in categories.items():
            if not _NAME.match(category):
                raise SettingsError(
                    f"Category {category!r}: a name is a lower-case word (letters, digits, - and _), up to 30."
                )
            if target not in names:
                raise SettingsError(f"Category {category!r}: there is no model {target!r}.")
        timeout = settings.get("timeout_ms", DEFAULT_TIMEOUT_MS)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= MAX_TIMEOUT_MS:
            raise SettingsError(f"'timeout_ms' must be a whole number of milliseconds, 1 to {MAX_TIMEOUT_MS}.")
        return {"model": model, "categories": dict(categories), "timeout_ms": timeout}

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        categories: dict[str, str] = settings["categories"]
        classification = situation.classifications.get(situation.route.name)
        if classification is None:
            classification = local_classification(last_user_text(situation.request), categories, "not asked")
        category = classification["category"]
        target = categories[category]
        inputs = {"classifier": settings["model"], **classification}
        if target not in situation.candidates:
            return Decision(
                chain=situation.candidates,
                reason=f"{category} (by {classification['by']}) → {target} cannot take it: the route's order",
                inputs=inputs,
            )
        chain = (target, *(m for m in situation.candidates if m != target))
        return Decision(chain=chain, reason=f"{category} (by {classification['by']}) → {target}", inputs=inputs)


def local_classification(text: str, categories: dict[str, str], why: str) -> dict[str, Any]:
    """The local scorer's category when it is one of `categories`, else the first (the default)."""
    scored = classify_prompt(text)
    category = scored if scored in categories else next(iter(categories))
    return {"category": category, "by": LOCAL, "why": why}
