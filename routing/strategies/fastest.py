"""The route's models ordered by how they have been doing lately: fastest, or most reliable.

Settings (JSON, in the admin), all optional:

    {"by": "ttft", "hours": 1, "min_calls": 20}

- `by`: "ttft" (time to first token, p50; the default), "latency" (the
  whole answer, p50), or "reliability" (the share of attempts that failed
  through the provider's fault: rate limits, overload, timeouts, outages);
- `hours`: the window measured, 1, 6 or 24 (routing/model_health.py);
- `min_calls`: a model measured on fewer calls than this is not ranked.

Measured models come first, best first (the route's order breaking ties);
models not yet measured enough follow in the route's order, so a new model
still gets calls and is measured in its turn. With no measurements at all
(the first minute, or a flushed Redis) the route's order is kept, and the
reason says so.
"""

from __future__ import annotations

from typing import Any

from routing.strategies.base import Decision, SettingsError, Situation

BY = ("ttft", "latency", "reliability")
HOURS = (1, 6, 24)
DEFAULT_MIN_CALLS = 20


class Fastest:
    name = "fastest"
    label = "Fastest or most reliable (measured lately)"
    example: dict[str, Any] = {"by": "ttft", "hours": 1, "min_calls": 20}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if unknown := set(settings) - {"by", "hours", "min_calls"}:
            raise SettingsError(f"Unknown setting {sorted(unknown)[0]!r}: fastest takes by, hours and min_calls.")
        by = settings.get("by", "ttft")
        if by not in BY:
            raise SettingsError(f"'by' must be one of {', '.join(BY)}.")
        hours = settings.get("hours", 1)
        if hours not in HOURS or isinstance(hours, bool):
            raise SettingsError(f"'hours' must be one of {', '.join(map(str, HOURS))}.")
        least = settings.get("min_calls", DEFAULT_MIN_CALLS)
        if not isinstance(least, int) or isinstance(least, bool) or least < 1:
            raise SettingsError("'min_calls' must be a whole number, at least 1.")
        return {"by": by, "hours": hours, "min_calls": least}

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        by, hours, least = settings["by"], settings["hours"], settings["min_calls"]
        window = situation.health.get("windows", {}).get(str(hours))
        if window is None:
            return Decision(chain=situation.candidates, reason="no measurements yet: the route's order")
        scores = {m: _score(window.get(m, {}), by, least) for m in situation.candidates}
        measured = sorted((m for m in situation.candidates if scores[m] is not None), key=lambda m: scores[m] or 0)
        unmeasured = [m for m in situation.candidates if scores[m] is None]
        chain = (*measured, *unmeasured)
        inputs = {"by": by, "hours": hours, "measured_at": situation.health.get("at"), "scores": scores}
        if not measured:
            return Decision(
                chain=chain, reason=f"too few calls measured in {hours} h: the route's order", inputs=inputs
            )
        return Decision(
            chain=chain, reason=f"{_words(by, scores[chain[0]])} over {hours} h → {chain[0]}", inputs=inputs
        )


def _score(figures: dict[str, Any], by: str, least: int) -> float | None:
    """Lower is better; None when too few calls were measured."""
    if by == "reliability":
        tried = figures.get("tried", 0)
        return figures.get("failed", 0) / tried if tried >= least else None
    value = figures.get("ttft_p50" if by == "ttft" else "latency_p50")
    return value if figures.get("answered", 0) >= least and value is not None else None


def _words(by: str, score: float | None) -> str:
    if by == "reliability":
        return f"most reliable ({(score or 0) * 100:.1f}% failed)"
    what = "first token" if by == "ttft" else "answer"
    return f"fastest {what} (p50 {score or 0:.0f} ms)"
