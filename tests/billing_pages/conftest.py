"""A small cast for the billing pages: alice and bob, each in a team of their own.

No passwords: force_login needs none, and hashing one costs a good part of a second.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import Team, TeamMembership


@pytest.fixture
def alice() -> Any:
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def bob() -> Any:
    return get_user_model().objects.create_user("bob")


@pytest.fixture
def research(alice: Any) -> Team:
    team = Team.objects.create(name="Research", slug="research")
    TeamMembership.objects.create(team=team, user=alice)
    return team


@pytest.fixture
def ops(bob: Any) -> Team:
    team = Team.objects.create(name="Ops", slug="ops")
    TeamMembership.objects.create(team=team, user=bob)
    return team


@pytest.fixture
def alice_client(client: Client, alice: Any) -> Client:
    client.force_login(alice)
    return client
