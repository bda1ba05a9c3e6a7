"""Every routing strategy, by the name a route stores (Route.strategy). A new strategy is added here."""

from __future__ import annotations

import json

from routing.strategies.base import Strategy
from routing.strategies.budget import Budget
from routing.strategies.fastest import Fastest
from routing.strategies.fixed import Fixed
from routing.strategies.rules import Rules
from routing.strategies.weighted import Weighted

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Fixed(), Rules(), Budget(), Weighted(), Fastest())}
CHOICES = [(s.name, s.label) for s in STRATEGIES.values()]
EXAMPLES = "; ".join(f"{s.name}: {json.dumps(s.example)}" for s in STRATEGIES.values())
