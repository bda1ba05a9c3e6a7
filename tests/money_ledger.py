"""A small registry and ledger for the savings and replay pages, with every figure they should show worked out by hand.

Registry: up/big ($5 in / $20 out / $0.50 cached / $6.25 cache write per M until PRICE_CHANGE,
then $10 / $40 / $1 / $12.50; 10,000-token context, 4,000 out; tools and vision),
up/small ($1 / $4, no cache prices; 2,000-token context, 1,000 out; no capabilities),
up/long ($2 / $8; 100,000-token context; no capabilities), and the fixed route "cheap": small, then big.

Team Acme (owner olivia, member mike), in the last 30 days:
  1. olivia, small via cheap, DAY_A: 1,000 in + 500 out, booked $0.003
  2. olivia, small via cheap, DAY_B: 1,000 in (400 of them cached) + 500 out, booked $0.003
  3. mike, big, DAY_B, needs tools: 3,000 in (1,000 cache writes) + 1,000 out, booked $0.0725
  4. mike, big, DAY_A, needs vision: 2,000 in + 1,000 out, booked $0.03
  5. olivia, long, DAY_B: 9,500 in + 1,000 out (10,500: beyond big's and small's context), booked $0.027
  6. mike, local/llama (no price), DAY_B: booked with no cost
  7. olivia, small via cheap, DAY_A, booked before needs were recorded (needs null), $0.003
And a call of Acme 40 days ago, and one of team Globex (member gina): in no figure.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model

from billing.models import Team, TeamMembership
from billing.periods import hour_of
from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep
from tests.usage_ledger import book, usage_record

NOW = dt.datetime.now(dt.UTC)
DAY_A = hour_of(NOW - dt.timedelta(days=10))
DAY_B = hour_of(NOW - dt.timedelta(days=1))
PRICE_CHANGE = hour_of(NOW - dt.timedelta(days=3))


@dataclass
class Ledger:
    olivia: Any
    mike: Any
    gina: Any
    staff: Any
    acme: Team
    globex: Team


def registry_create() -> None:
    up = Provider.objects.create(name="up", kind="simulated")
    big = LanguageModel.objects.create(
        provider=up,
        public_id="up/big",
        upstream_name="big",
        context_window=10_000,
        max_output_tokens=4_000,
        capabilities=["tools", "vision"],
    )
    ModelPrice.objects.create(
        model=big,
        valid_from=NOW - dt.timedelta(days=60),
        input_per_million=Decimal(5),
        output_per_million=Decimal(20),
        cached_input_per_million=Decimal("0.5"),
        cache_write_per_million=Decimal("6.25"),
    )
    ModelPrice.objects.create(
        model=big,
        valid_from=PRICE_CHANGE,
        input_per_million=Decimal(10),
        output_per_million=Decimal(40),
        cached_input_per_million=Decimal(1),
        cache_write_per_million=Decimal("12.5"),
    )
    small = LanguageModel.objects.create(
        provider=up, public_id="up/small", upstream_name="small", context_window=2_000, max_output_tokens=1_000
    )
    ModelPrice.objects.create(
        model=small, valid_from=NOW - dt.timedelta(days=60), input_per_million=Decimal(1), output_per_million=Decimal(4)
    )
    long = LanguageModel.objects.create(
        provider=up, public_id="up/long", upstream_name="long", context_window=100_000, max_output_tokens=8_000
    )
    ModelPrice.objects.create(
        model=long, valid_from=NOW - dt.timedelta(days=60), input_per_million=Decimal(2), output_per_million=Decimal(8)
    )
    cheap = Route.objects.create(name="cheap")
    RouteStep.objects.create(route=cheap, model=small, position=0)
    RouteStep.objects.create(route=cheap, model=big, position=1)


def ledger_create() -> Ledger:
    users = get_user_model().objects
    olivia, mike, gina = (users.create_user(name) for name in ("olivia", "mike", "gina"))
    staff = users.create_user("sam", is_staff=True)
    acme = Team.objects.create(name="Acme", slug="acme")
    globex = Team.objects.create(name="Globex", slug="globex")
    TeamMembership.objects.create(team=acme, user=olivia, role=TeamMembership.Role.OWNER)
    TeamMembership.objects.create(team=acme, user=mike)
    TeamMembership.objects.create(team=globex, user=gina)
    registry_create()
    small = {"model": "up/small", "route": "cheap", "team": acme}
    book(
        usage_record(at=DAY_A, user=olivia, **small),
        usage_record(at=DAY_B, user=olivia, cached_input_tokens=400, **small),
        usage_record(
            at=DAY_B,
            model="up/big",
            user=mike,
            team=acme,
            needs="tools",
            input_tokens=3_000,
            cache_write_tokens=1_000,
            output_tokens=1_000,
            cost_usd=Decimal("0.0725"),
        ),
        usage_record(
            at=DAY_A,
            model="up/big",
            user=mike,
            team=acme,
            needs="vision",
            input_tokens=2_000,
            output_tokens=1_000,
            input_price_per_million=Decimal(5),
            output_price_per_million=Decimal(20),
        ),
        usage_record(
            at=DAY_B,
            model="up/long",
            user=olivia,
            team=acme,
            input_tokens=9_500,
            output_tokens=1_000,
            input_price_per_million=Decimal(2),
            output_price_per_million=Decimal(8),
        ),
        usage_record(
            at=DAY_B,
            model="local/llama",
            user=mike,
            team=acme,
            input_price_per_million=None,
            output_price_per_million=None,
            cost_usd=None,
        ),
        usage_record(at=DAY_A, user=olivia, needs=None, **small),
        usage_record(at=NOW - dt.timedelta(days=40), user=olivia, **small),
        usage_record(at=DAY_B, model="up/big", user=gina, team=globex, cost_usd=Decimal(7)),
    )
    return Ledger(olivia, mike, gina, staff, acme, globex)
