"""The strong tier only for the prompts a model trained on graded outcomes says need it.

Settings (JSON, in the admin):

    {"weak": "sim/atlas", "strong": "sim/sage-pro", "strong_share": 0.3, "votes_team": "acme"}

- `weak`, `strong` (required): the route's two tiers;
- `strong_share`: the share of calls the strong tier should take at most,
  as calibrated on the training prompts (default 0.3);
- `votes_team`: the team whose blind arena votes between the two tiers it
  trains on (no team: no votes; never every team's).

The model (routing/learned/router.py) is trained by a Celery task started
from the route's admin page (routing/learned/training.py), from the route's
uploaded graded sets, the team's votes and learning cascades' outcomes
between the two tiers. Each training is a new RouterModel version; the
registry snapshot (routing/catalog.py) holds the route's newest, loaded
once per version in each process, so deciding reads no database. Until a
model is trained the weak tier answers first, and the reason says so.
The trace names the version, the prompt's score, the threshold and each
tier's predicted chance of answering well (p_weak_ok, p_strong_ok).
"""

from __future__ import annotations

from typing import Any

from routing.strategies.base import Decision, SettingsError, Situation, first_then_rest
from routing.strategies.prompt_facts import last_user_text

DEFAULT_SHARE = 0.3


class Learned:
    name = "learned"
    label = "Learned (a model trained on graded outcomes picks the tier)"
    example: dict[str, Any] = {"weak": "sim/atlas", "strong": "sim/sage-pro", "strong_share": 0.3}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - {"weak", "strong", "strong_share", "votes_team"}:
            raise SettingsError(
                f"Unknown setting {sorted(unknown)[0]!r}: learned takes weak, strong, strong_share and votes_team."
            )
        checked: dict[str, Any] = {}
        for tier in ("weak", "strong"):
            model = settings.get(tier)
            if not isinstance(model, str) or not model:
                raise SettingsError(f"'{tier}' must name the route's {tier} model, such as \"sim/sage-pro\".")
            if model not in names:
                raise SettingsError(f"'{tier}': there is no model {model!r}.")
            checked[tier] = model
        if checked["weak"] == checked["strong"]:
            raise SettingsError("'weak' and 'strong' must be two different models.")
        share = settings.get("strong_share", DEFAULT_SHARE)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise SettingsError("'strong_share' must be a number from 0 to 1, such as 0.3 for at most 30%.")
        checked["strong_share"] = float(share)
        team = settings.get("votes_team", "")
        if not isinstance(team, str):
            raise SettingsError("'votes_team' must be a team's slug.")
        if team:
            checked["votes_team"] = team
        return checked

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        weak, strong = settings["weak"], settings["strong"]
        loaded = situation.catalog.learned.get(situation.route.name)
        if loaded is None:
            return first_then_rest(situation, weak, {"version": None}, f"no model trained yet → {weak}")
        prediction = loaded.router.predict(last_user_text(situation.request))
        score = prediction.score
        up = loaded.router.wants_strong(score)
        inputs = {
            "version": loaded.version,
            "score": round(score, 4),
            "threshold": round(loaded.router.threshold, 4),
            # Each tier's predicted chance of answering this prompt well.
            "p_weak_ok": round(prediction.weak_ok, 4),
            "p_strong_ok": round(prediction.strong_ok, 4),
        }
        first = strong if up else weak
        word = "at or above" if up else "below"
        return first_then_rest(
            situation, first, inputs, f"model v{loaded.version}: score {score:.2f} {word} threshold → {first}"
        )
