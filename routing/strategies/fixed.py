"""The route's chain as an admin ordered it: the first model that can take the call, then the next."""

from __future__ import annotations

from typing import Any

from routing.strategies.base import Decision, SettingsError, Situation


class Fixed:
    name = "fixed"
    label = "Fixed chain"
    example: dict[str, Any] = {}

    def check_settings(self, settings: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        if settings:
            raise SettingsError("A fixed chain takes no settings: leave them empty ({}).")
        return {}

    def decide(self, situation: Situation, settings: dict[str, Any]) -> Decision:
        return Decision(chain=situation.candidates, reason="fixed chain")
