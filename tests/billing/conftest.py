"""A small cast for the spend cap tests: alice and bob in team Acme, with keys, against the gateway fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from django.contrib.auth import get_user_model

from billing.models import ApiKey, Team, TeamMembership
from billing.services import api_key_create
from tests.gateway import conftest as gateway
from tests.spend_state import spend_state_clear

# The gateway tests' registry (a fake OpenAI upstream), alice, her key and an SDK client for it.
registry = gateway.registry
alice = gateway.alice
api_key = gateway.api_key
client = gateway.client


@pytest.fixture(autouse=True)
def fresh_caps(redis_url: str) -> Iterator[None]:
    """Spend counters, reservations and cached caps of an earlier test gone."""
    spend_state_clear()
    yield
    spend_state_clear()


@pytest.fixture
def bob(transactional_db: Any) -> Any:
    return get_user_model().objects.create_user("bob")


@pytest.fixture
def acme(alice: Any, bob: Any) -> Team:
    team = Team.objects.create(name="Acme", slug="acme")
    TeamMembership.objects.create(team=team, user=alice, role=TeamMembership.Role.OWNER)
    TeamMembership.objects.create(team=team, user=bob)
    return team


@pytest.fixture
def alice_key(alice: Any, api_key: str) -> ApiKey:
    """The ApiKey row behind the `api_key` fixture (alice's own key, no team)."""
    return ApiKey.objects.get(user=alice, team=None)


def sdk_client(gateway_url: str, raw_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=raw_key, max_retries=0, timeout=20)


@pytest.fixture
def acme_clients(
    gateway_url: str, celery_worker: Any, registry: dict[str, Any], alice: Any, bob: Any, acme: Team
) -> dict[str, openai.OpenAI]:
    """OpenAI clients with keys that book to team Acme, one per member."""
    return {
        user.username: sdk_client(gateway_url, api_key_create(user=user, name="acme", team=acme)[1])
        for user in (alice, bob)
    }
