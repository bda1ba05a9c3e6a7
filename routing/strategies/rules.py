"""Ordered rules: the first whose conditions all hold sends the call to a model or to another route.

Settings (JSON, in the admin):

    {"rules": [
        {"name": "code", "when": {"code": true}, "to": "coding"},
        {"name": "support", "when": {"tags": ["support"], "keywords": ["refund", "invoice"]}, "to": "sim/swift"},
        {"name": "long", "when": {"min_chars": 20000}, "to": "sim/sage-pro"}
    ]}

Conditions, all of which must hold (a rule has at least one):

- `keywords`: any of these words or phrases in the last user message (case
  and surrounding punctuation ignored);
- `regex`: this pattern found in the last user message (Python syntax; read
  on its first MAX_SCAN_CHARS characters);
- `tags`: any of these among the caller's tags (`metadata.tags` or the
  x-switchyard-tags header, comma-separated);
- `category`: any of these task types, from the local prompt classifier
  (routing/strategies/complexity.py: coding, reasoning, writing, quick);
- `min_chars` / `max_chars`: the whole prompt's length in characters;
- `code`, `images`, `tools`: whether the request has code, images, tools.

`to` names a model (the call tries it first, then the route's own chain) or
a route (resolved in its turn, with its own strategy). A rule whose model
cannot take the request (disabled, or lacking a capability the request
needs) is passed over, and the trace says so. When no rule holds, the
route's own chain is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from routing.strategies.base import Decision, SettingsError, Situation
from routing.strategies.capabilities import needed_capabilities
from routing.strategies.complexity import CATEGORIES, classify_prompt
from routing.strategies.prompt_facts import has_code, has_images, last_user_text, prompt_chars

MAX_SCAN_CHARS = 20_000
_LIST_CONDITIONS = ("keywords", "tags", "category")
_INT_CONDITIONS = ("min_chars", "max_chars")
_BOOL_CONDITIONS = ("code", "images", "tools")
_CONDITIONS = (*_LIST_CONDITIONS, "regex", *_INT_CONDITIONS, *_BOOL_CONDITIONS)


class Rules:
    name = "rules"
    label = "Rules (keywords, tags, task type, length, code, images, tools)"
    example: dict[str, Any] = {"rules": [{"name": "code", "when": {"code": True}, "to": "coding"}]}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if set(settings) - {"rules"}:
            raise SettingsError(f"Unknown setting {sorted(set(settings) - {'rules'})[0]!r}: rules takes only 'rules'.")
        rules = settings.get("rules")
        if not isinstance(rules, list) or not rules:
            raise SettingsError("'rules' must be a non-empty list of rules.")
        return {"rules": [_checked_rule(rule, i, names) for i, rule in enumerate(rules, 1)]}

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        passed_over: list[dict[str, str]] = []
        for rule in settings["rules"]:
            if not _holds(rule["when"], situation):
                continue
            target = rule["to"]
            if target in situation.catalog.routes:
                return Decision(
                    route=target,
                    reason=f"rule {rule['name']!r} → route {target}",
                    inputs={"rule": rule["name"], "passed_over": passed_over},
                )
            why_not = _unfit(situation, target)
            if why_not:
                passed_over.append({"rule": rule["name"], "model": target, "reason": why_not})
                continue
            rest = tuple(model for model in situation.candidates if model != target)
            return Decision(
                chain=(target, *rest),
                reason=f"rule {rule['name']!r} → {target}",
                inputs={"rule": rule["name"], "passed_over": passed_over},
            )
        return Decision(
            chain=situation.candidates, reason="no rule matched: the route's chain", inputs={"passed_over": passed_over}
        )


def _checked_rule(rule: Any, number: int, names: frozenset[str]) -> dict[str, Any]:
    where = f"Rule {number}"
    if not isinstance(rule, dict):
        raise SettingsError(f"{where} must be an object with 'when' and 'to'.")
    if set(rule) - {"name", "when", "to"}:
        raise SettingsError(f"{where} has an unknown key {sorted(set(rule) - {'name', 'when', 'to'})[0]!r}.")
    to = rule.get("to")
    if not isinstance(to, str) or to not in names:
        raise SettingsError(f"{where} sends to {to!r}, which is no model or route.")
    when = rule.get("when")
    if not isinstance(when, dict) or not when:
        raise SettingsError(f"{where} needs at least one condition in 'when'.")
    unknown = set(when) - set(_CONDITIONS)
    if unknown:
        raise SettingsError(
            f"{where} has an unknown condition {sorted(unknown)[0]!r}; known: {', '.join(_CONDITIONS)}."
        )
    checked: dict[str, Any] = {}
    for key, value in when.items():
        if key in _LIST_CONDITIONS:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise SettingsError(f"{where}: {key!r} must be a non-empty list of words.")
            checked[key] = [v.strip().lower() for v in value]
            if key == "category" and (bad := set(checked[key]) - set(CATEGORIES)):
                raise SettingsError(f"{where}: unknown category {sorted(bad)[0]!r}; known: {', '.join(CATEGORIES)}.")
        elif key == "regex":
            if not isinstance(value, str) or not value:
                raise SettingsError(f"{where}: 'regex' must be a pattern.")
            try:
                re.compile(value)
            except re.error as exc:
                raise SettingsError(f"{where}: 'regex' is not a valid pattern ({exc}).") from None
            checked[key] = value
        elif key in _INT_CONDITIONS:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SettingsError(f"{where}: {key!r} must be a whole number of characters.")
            checked[key] = value
        else:
            if not isinstance(value, bool):
                raise SettingsError(f"{where}: {key!r} must be true or false.")
            checked[key] = value
    name = rule.get("name", "")
    if not isinstance(name, str):
        raise SettingsError(f"{where}: 'name' must be text.")
    return {"name": name or f"rule {number}", "when": checked, "to": to}


def _keywords(words: list[str], situation: Situation, text: str) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", lowered) for word in words)


_TESTS: dict[str, Callable[[Any, Situation, str], bool]] = {
    "keywords": _keywords,
    "regex": lambda pattern, situation, text: re.search(pattern, text) is not None,
    "tags": lambda tags, situation, text: bool(situation.hints.tags & set(tags)),
    "category": lambda categories, situation, text: classify_prompt(text) in categories,
    "min_chars": lambda least, situation, text: prompt_chars(situation.request) >= least,
    "max_chars": lambda most, situation, text: prompt_chars(situation.request) <= most,
    "code": lambda wanted, situation, text: has_code(situation.request) == wanted,
    "images": lambda wanted, situation, text: has_images(situation.request) == wanted,
    "tools": lambda wanted, situation, text: bool(situation.request.tools) == wanted,
}
assert set(_TESTS) == set(_CONDITIONS)


def _holds(when: dict[str, Any], situation: Situation) -> bool:
    text = last_user_text(situation.request)[:MAX_SCAN_CHARS]
    return all(_TESTS[key](value, situation, text) for key, value in when.items())


def _unfit(situation: Situation, model_id: str) -> str:
    model = situation.catalog.models.get(model_id)
    if model is None or not model.usable:
        return "disabled"
    if missing := needed_capabilities(situation.request) - model.capabilities:
        return "lacks " + ", ".join(sorted(missing))
    return ""
