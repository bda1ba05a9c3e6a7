"""Every routing strategy, by the name a route stores (Route.strategy). A new strategy is added here."""

from __future__ import annotations

import json
from typing import Any

from routing.strategies.base import SettingsError, Strategy
from routing.strategies.budget import Budget
from routing.strategies.cascade import Cascade
from routing.strategies.classifier import Classifier
from routing.strategies.complexity_bands import ComplexityBands
from routing.strategies.fastest import Fastest
from routing.strategies.fixed import Fixed
from routing.strategies.learned import Learned
from routing.strategies.quality import Quality
from routing.strategies.rules import Rules
from routing.strategies.weighted import Weighted

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Fixed(),
        Rules(),
        ComplexityBands(),
        Budget(),
        Weighted(),
        Fastest(),
        Quality(),
        Cascade(),
        Classifier(),
        Learned(),
    )
}
CHOICES = [(s.name, s.label) for s in STRATEGIES.values()]
EXAMPLES = "; ".join(f"{s.name}: {json.dumps(s.example)}" for s in STRATEGIES.values())


class UnknownStrategy(SettingsError):
    """A route names a strategy that no longer exists (or never did)."""


def settings_checked(strategy: str, settings: Any, names: frozenset[str]) -> dict[str, Any]:
    """`strategy`'s settings in canonical form, checked against the models and routes `names`.

    Raises SettingsError saying why they cannot be used, UnknownStrategy when no strategy has that name.
    The admin's form and the registry snapshot both check a route with it.
    """
    if strategy not in STRATEGIES:
        raise UnknownStrategy(f"Unknown strategy {strategy!r}.")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise SettingsError('The settings must be a JSON object, such as {} or {"max_price": "0.01"}.')
    return STRATEGIES[strategy].check_settings(settings, names)
