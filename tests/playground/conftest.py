"""A cast and a registry of simulated models for the playground tests.

alice and bob are in team Acme; carol is in no team. The simulated models
answer offline, each paced its own way (routing/providers/simulated.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import Team, TeamMembership
from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep
from tests.playground.browser import CHROMIUM
from tests.spend_state import spend_state_clear

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# public id -> (simulated options, LanguageModel fields)
SIMULATED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "quick": ({"first_token_ms": 0, "tokens_per_second": 0, "output_tokens": 40}, {}),
    "paced": ({"first_token_ms": 50, "tokens_per_second": 40, "output_tokens": 60}, {}),
    "steady": ({"first_token_ms": 50, "tokens_per_second": 30, "output_tokens": 50}, {}),
    "long": ({"first_token_ms": 0, "tokens_per_second": 40, "output_tokens": 90}, {}),
    # About two seconds each, for the browser.
    "walk": ({"first_token_ms": 100, "tokens_per_second": 40, "output_tokens": 80, "style": "plain"}, {}),
    "jog": ({"first_token_ms": 150, "tokens_per_second": 45, "output_tokens": 85, "style": "thorough"}, {}),
    "stroll": ({"first_token_ms": 200, "tokens_per_second": 38, "output_tokens": 70, "style": "friendly"}, {}),
    "broken": ({"fail_rate": 1, "fail_mode": "unavailable"}, {}),
    "slow": ({"first_token_ms": 0, "tokens_per_second": 15, "output_tokens": 400}, {}),
    "slower": ({"first_token_ms": 0, "tokens_per_second": 12, "output_tokens": 400}, {}),
    "small": ({"tokens_per_second": 0}, {"context_window": 60}),
    "off": ({}, {"enabled": False}),
}


@pytest.fixture
def fresh_caps(redis_url: str) -> Iterator[None]:
    """No spend counter, reservation or cached cap of an earlier test: user and team ids are reused."""
    spend_state_clear()
    yield
    spend_state_clear()


@pytest.fixture
def sim(db: Any) -> dict[str, LanguageModel]:
    provider = Provider.objects.create(name="sim", kind=Provider.Kind.SIMULATED)
    models = {}
    for name, (options, fields) in SIMULATED.items():
        defaults = {"context_window": 32_000, "max_output_tokens": 4_096}
        model = LanguageModel.objects.create(
            public_id=f"sim/{name}", provider=provider, upstream_name=name, options=options, **(defaults | fields)
        )
        ModelPrice.objects.create(model=model, input_per_million=Decimal("1.00"), output_per_million=Decimal("4.00"))
        models[name] = model
    fallback = Route.objects.create(name="fallback", description="broken first, then paced")
    RouteStep.objects.create(route=fallback, model=models["broken"], position=0)
    RouteStep.objects.create(route=fallback, model=models["paced"], position=1)
    Route.objects.create(name="closed", enabled=False)
    return models


@pytest.fixture
def cast(db: Any, fresh_caps: None) -> dict[str, Any]:
    users = get_user_model().objects
    # No passwords: hashing one takes most of a second (tests that log in by form set one).
    alice, bob, carol = (users.create_user(name) for name in ("alice", "bob", "carol"))
    acme = Team.objects.create(name="Acme", slug="acme")
    TeamMembership.objects.create(team=acme, user=alice, role=TeamMembership.Role.OWNER)
    TeamMembership.objects.create(team=acme, user=bob)
    return {"alice": alice, "bob": bob, "carol": carol, "acme": acme}


@pytest.fixture
def alice_client(cast: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(cast["alice"])
    return client


def session_cookie(client: Client) -> dict[str, str]:
    """The logged-in test client's session, as cookies for another HTTP client (the session row is in the DB)."""
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium (tests/playground/browser.py), for the module's tests."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread, and Django
    # refuses ORM calls from a thread with a running loop. The tests' own
    # ORM calls run between Playwright calls, never during one.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                ],
            )
            yield launched
            launched.close()
