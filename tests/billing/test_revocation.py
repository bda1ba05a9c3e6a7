"""Keys stop working when they or their user are revoked, by any means, within a few seconds.

The principal of a key is cached in Redis: shared by every web process, so
one process here stands for them all. Signals drop it at once; what they do
not see (QuerySet.update) expires with the cache entry.
"""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.api_auth import PRINCIPAL_CACHE_SECONDS
from billing.models import ApiKey
from billing.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sdk(gateway_url: str, alice: Any) -> tuple[openai.OpenAI, ApiKey]:
    key, plain = api_key_create(user=alice, name="laptop")
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=plain, max_retries=0, timeout=10)
    client.models.list()  # cached from here on
    return client, key


def refused(client: openai.OpenAI) -> bool:
    try:
        client.models.list()
    except openai.AuthenticationError:
        return True
    return False


def refused_within(client: openai.OpenAI, seconds: float) -> float:
    """Seconds until the key was refused; fails if it still works after `seconds`."""
    started = time.monotonic()
    while not refused(client):
        assert time.monotonic() - started < seconds, f"the key still works after {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_deactivated_user_s_keys_stop_at_once(sdk: tuple[openai.OpenAI, ApiKey], alice: Any) -> None:
    client, _ = sdk
    alice.is_active = False
    alice.save()
    assert refused(client)


def test_a_user_deactivated_by_a_bulk_update_is_refused_within_the_cache_s_life(
    sdk: tuple[openai.OpenAI, ApiKey], alice: Any
) -> None:
    client, _ = sdk
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    refused_within(client, PRINCIPAL_CACHE_SECONDS + 2)


def test_a_key_revoked_by_a_bulk_update_is_refused_within_the_cache_s_life(sdk: tuple[openai.OpenAI, ApiKey]) -> None:
    client, key = sdk
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    refused_within(client, PRINCIPAL_CACHE_SECONDS + 2)


def test_a_key_deleted_in_bulk_stops_at_once(sdk: tuple[openai.OpenAI, ApiKey]) -> None:
    client, key = sdk
    ApiKey.objects.filter(pk=key.pk).delete()
    assert refused(client)
