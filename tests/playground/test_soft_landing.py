"""A route with soft landing in the playground: the column says which models the cap could not carry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from billing.models import SpendCap
from routing.models import LanguageModel, ModelPrice, Route, RouteStep
from tests.playground.test_streaming import live, start, wait_for_records

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["live"]


def test_a_soft_landing_route_answers_with_the_model_the_cap_can_carry_and_the_column_says_why(
    live: tuple[str, Client], sim: dict[str, LanguageModel], cast: dict[str, Any]
) -> None:
    pricey = LanguageModel.objects.create(
        public_id="sim/pricey", provider=sim["quick"].provider, upstream_name="pricey", context_window=32_000,
        max_output_tokens=4_096,
    )  # fmt: skip
    # Its 4,096 output tokens may cost $1.64: more than the cap's $1; sim/quick's worst case is under 2 cents.
    ModelPrice.objects.create(model=pricey, input_per_million=Decimal("100"), output_per_million=Decimal("400"))
    route = Route.objects.create(name="landing", soft_landing=True)
    RouteStep.objects.create(route=route, model=pricey, position=0)
    RouteStep.objects.create(route=route, model=sim["quick"], position=1)
    SpendCap.objects.create(user=cast["alice"], limit_usd=Decimal("1"))

    run = start(live[1], "landing", "sim/steady")
    records = {r.requested: r for r in wait_for_records(run)}

    assert records["landing"].model == "sim/quick"
    page = live[1].get(f"/playground/runs/{run.pk}/").content.decode()
    assert "sim/pricey: skipped (soft landing: it may cost $1.6" in page
    assert "more than the $1.00 left on User alice&#x27;s monthly cap of $1.00)" in page
