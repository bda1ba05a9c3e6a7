"""A weighted split of calls between models (A/B), sticky per session or per caller.

Settings (JSON, in the admin):

    {"weights": {"sim/atlas": 80, "sim/sage-pro": 20}, "sticky": "session"}

- `weights`: models of the route's chain and their whole-number shares.
- `sticky`: "session" (the default) keeps every call of one session on one
  model: the session is `metadata.session_id` or the x-switchyard-session
  header, else the caller (user, team or API key); "caller" keeps each
  caller on one model; "none" draws every call afresh.

The draw hashes the route's name with the sticky key (SHA-256), so any
process, any worker and any restart send the same session to the same
model, with no state to share. The chosen model is tried first; the route's
other models follow as its fallback, in the route's order. A model with a
weight that cannot take the call (disabled, lacking a capability) is left
out of the draw, and the others share its weight.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from routing.strategies.base import Decision, NoChoice, SettingsError, Situation

STICKY = ("session", "caller", "none")


class Weighted:
    name = "weighted"
    label = "Weighted split (A/B), sticky per session"
    example: dict[str, Any] = {"weights": {"sim/atlas": 80, "sim/sage-pro": 20}, "sticky": "session"}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - {"weights", "sticky"}:
            raise SettingsError(f"Unknown setting {sorted(unknown)[0]!r}: weighted takes weights and sticky.")
        weights = settings.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise SettingsError("'weights' must map models to their shares, such as {\"sim/atlas\": 80}.")
        for model, weight in weights.items():
            if model not in names:
                raise SettingsError(f"'weights' names {model!r}, which is no model.")
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                raise SettingsError(f"The weight of {model!r} must be a whole number, 0 or more.")
        if not any(weights.values()):
            raise SettingsError("At least one weight must be above 0.")
        sticky = settings.get("sticky", "session")
        if sticky not in STICKY:
            raise SettingsError(f"'sticky' must be one of {', '.join(STICKY)}.")
        return {"weights": dict(weights), "sticky": sticky}

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        weights = {m: settings["weights"][m] for m in situation.candidates if settings["weights"].get(m, 0) > 0}
        if not weights:
            raise NoChoice(
                f"None of the models that route `{situation.route.name}` splits calls between can take this call."
            )
        total = sum(weights.values())
        if settings["sticky"] == "none":
            kind, draw = "none", secrets.randbelow(total)
        else:
            session = settings["sticky"] == "session" and situation.hints.session
            kind, key = ("session", situation.hints.session) if session else ("caller", situation.caller)
            digest = hashlib.sha256(f"{situation.route.name}\n{key}".encode()).digest()
            draw = int.from_bytes(digest[:8], "big") % total
        chosen = _pick(weights, draw)
        rest = tuple(m for m in situation.candidates if m != chosen)
        return Decision(
            chain=(chosen, *rest),
            reason=f"weighted split ({weights[chosen]} of {total}, sticky by {kind}) → {chosen}",
            inputs={"weights": weights, "sticky": kind},
        )


def _pick(weights: dict[str, int], draw: int) -> str:
    """The model whose share of [0, total) holds `draw`, shares laid out in the route's order."""
    for model, weight in weights.items():
        if draw < weight:
            return model
        draw -= weight
    raise AssertionError("the draw is below the total of the weights")
