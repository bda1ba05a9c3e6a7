"""A cheap model answers first; when its answer fails a check, the next tier answers again.

Settings (JSON, in the admin), all optional:

    {"min_chars": 20, "json": true, "refusal": true, "truncated": true, "learn": false}

The tiers are the route's models in its order, cheapest first as the admin
lists them. The worker (routing/calls/runner.py) holds each tier's answer
back until it passed the checks (answer_checks.py), so a streamed answer
only starts once the cheap one is known to do; the last tier's answer is
never held. The checks, each on unless set to false (or 0):

- `min_chars`: an answer shorter than this is too short for a question;
- `json`: the request asked for JSON (`response_format`) and the answer is
  not valid JSON;
- `refusal`: the answer opens as a refusal ("I'm sorry, but I can't…");
- `truncated`: the answer stopped at its token limit.

With `"learn": true` (off by default, since it keeps prompts), each call's
outcome (which tiers' answers failed, which was sent) is kept with the
prompt's head (routing.models.CascadeOutcome), unless personal data was
found in it: graded prompts a learned route trains on.

A call that escalates is booked once, with the escalated answers' cost
added to its own (each escalated attempt, with its tokens and cost, is in
the trace), and a capped caller reserves the sum of every tier's worst
case. A failure that is not a check (a rate limit, an outage) falls back
along the tiers as in any chain.
"""

from __future__ import annotations

from typing import Any

from routing.strategies.base import Decision, SettingsError, Situation

CHECKS = ("min_chars", "json", "refusal", "truncated")
DEFAULTS: dict[str, Any] = {"min_chars": 20, "json": True, "refusal": True, "truncated": True, "learn": False}


class Cascade:
    name = "cascade"
    label = "Cascade (cheap first, escalate when a check fails)"
    example: dict[str, Any] = {"min_chars": 20, "json": True, "refusal": True}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - set(DEFAULTS):
            raise SettingsError(f"Unknown setting {sorted(unknown)[0]!r}: cascade takes {', '.join(DEFAULTS)}.")
        checked = dict(DEFAULTS)
        for name in ("json", "refusal", "truncated", "learn"):
            if name in settings:
                if not isinstance(settings[name], bool):
                    raise SettingsError(f"'{name}' must be true or false.")
                checked[name] = settings[name]
        if "min_chars" in settings:
            value = settings["min_chars"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SettingsError("'min_chars' must be a whole number of characters, 0 to turn it off.")
            checked["min_chars"] = value
        return checked

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        tiers = situation.candidates
        reason = f"cascade from {tiers[0]}" if len(tiers) > 1 else f"cascade of one tier: {tiers[0]}"
        return Decision(chain=tiers, reason=reason, inputs={"checks": settings}, checks=settings)
