"""The local scorer rates how demanding the prompt is; the band its score falls in names the model.

Settings (JSON, in the admin):

    {"bands": [{"name": "easy", "below": 0.2, "model": "sim/swift-mini"},
               {"name": "medium", "below": 0.5, "model": "sim/atlas"},
               {"name": "hard", "model": "sim/sage-pro"}]}

- `bands` (required, 2 to 8), in rising order: a score below a band's
  `below` falls in it, unless an earlier band took it; the last band has
  no `below` and takes every score left. `name` is shown in the trace.

The score is complexity.complexity_score of the last user message (its
coding, reasoning and writing cues and its length, from 0 to 1), raised by
DEPTH_STEP for every earlier user turn, up to DEPTH_MAX: a reply deep in a
conversation has to hold the whole of it, which the last message alone
does not show. No model is called; the score, the band and the turns are in
the call's trace.
"""

from __future__ import annotations

import re
from typing import Any

from routing.strategies.base import Decision, SettingsError, Situation, first_then_rest
from routing.strategies.complexity import complexity_score
from routing.strategies.prompt_facts import last_user_text

MAX_BANDS = 8
DEPTH_STEP = 0.05
DEPTH_MAX = 0.2
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,29}$")


class ComplexityBands:
    name = "complexity"
    label = "Complexity (the local scorer's score picks a band's model)"
    example: dict[str, Any] = {
        "bands": [{"name": "easy", "below": 0.4, "model": "sim/atlas"}, {"name": "hard", "model": "sim/sage-pro"}]
    }

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - {"bands"}:
            raise SettingsError(f"Unknown setting {sorted(unknown)[0]!r}: complexity takes bands.")
        bands = settings.get("bands")
        if not isinstance(bands, list) or not 2 <= len(bands) <= MAX_BANDS:
            raise SettingsError(
                f"'bands' must list 2 to {MAX_BANDS} bands in rising order, such as "
                '[{"name": "easy", "below": 0.3, "model": "sim/swift-mini"}, '
                '{"name": "hard", "model": "sim/sage-pro"}].'
            )
        checked: list[dict[str, Any]] = []
        floor = 0.0
        for number, band in enumerate(bands, start=1):
            last = number == len(bands)
            if not isinstance(band, dict) or set(band) - {"name", "below", "model"}:
                raise SettingsError(f"Band {number}: a band is an object with name, below and model.")
            name = band.get("name", f"band-{number}")
            if not isinstance(name, str) or not _NAME.match(name):
                raise SettingsError(
                    f"Band {number}: its name is a lower-case word (letters, digits, - and _), up to 30."
                )
            if any(name == earlier["name"] for earlier in checked):
                raise SettingsError(f"Band {number}: the name {name!r} is used twice.")
            model = band.get("model")
            if not isinstance(model, str) or model not in names:
                raise SettingsError(f"Band {name!r}: 'model' must name a model, such as \"sim/atlas\".")
            entry: dict[str, Any] = {"name": name, "model": model}
            if last:
                if "below" in band:
                    raise SettingsError(f"Band {name!r}: the last band takes every score left, so it has no 'below'.")
            else:
                below = band.get("below")
                if isinstance(below, bool) or not isinstance(below, int | float) or not floor < below <= 1:
                    raise SettingsError(
                        f"Band {name!r}: 'below' must be a score above {floor:g} and at most 1, "
                        "each band's above the one before."
                    )
                entry["below"] = float(below)
                floor = float(below)
            checked.append(entry)
        return {"bands": checked}

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        turns = sum(1 for message in situation.request.messages if message.role == "user")
        depth = min(DEPTH_MAX, DEPTH_STEP * max(0, turns - 1))
        score = round(min(1.0, complexity_score(last_user_text(situation.request)) + depth), 4)
        bands: list[dict[str, Any]] = settings["bands"]
        band = next((b for b in bands[:-1] if score < b["below"]), bands[-1])
        inputs = {"score": score, "band": band["name"], "turns": turns}
        return first_then_rest(
            situation, band["model"], inputs, f"complexity {score:.2f} → band {band['name']} → {band['model']}"
        )
