"""The keys page against the real /v1: the whole site under uvicorn, a real worker, the test Redis."""

from __future__ import annotations

import contextlib
import html
import io
import re
from typing import Any

import httpx
import openai
import pytest
import redis
from django.conf import settings
from django.test import Client

from billing.api_auth import cache_key
from billing.models import ApiKey
from billing.services import api_key_create
from routing.models import LanguageModel, Provider, Route, RouteStep
from tests.billing_pages.test_keys_page import plain_key_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_key_revoked_on_the_page_stops_working_on_v1_at_once(
    alice_client: Client, gateway_url: str, redis_url: str
) -> None:
    plain = plain_key_in(alice_client.post("/keys/", {"name": "laptop"}).content.decode())
    key = ApiKey.objects.get()
    sdk = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=plain, max_retries=0, timeout=10)
    sdk.models.list()
    cache = redis.Redis.from_url(redis_url)
    assert cache.exists(cache_key(key.hashed)), "the key is served from the cache, which revoking must clear"

    alice_client.post(f"/keys/{key.pk}/revoke/")

    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.models.list()
    assert caught.value.code == "invalid_api_key"
    assert not cache.exists(cache_key(key.hashed))
    cache.close()


def test_the_home_page_snippet_runs_as_shown_against_the_gateway(
    alice_client: Client, alice: Any, gateway_url: str, celery_worker: Any
) -> None:
    sim = Provider.objects.create(name="sim", kind="simulated")
    model = LanguageModel.objects.create(
        public_id="sim/swift",
        provider=sim,
        upstream_name="swift",
        context_window=8000,
        max_output_tokens=1000,
        options={"first_token_ms": 0, "tokens_per_second": 0},
    )
    RouteStep.objects.create(route=Route.objects.create(name="auto"), model=model, position=0)
    _, plain = api_key_create(user=alice, name="snippet")
    session = alice_client.cookies[settings.SESSION_COOKIE_NAME].value

    page = httpx.get(f"{gateway_url}/", cookies={settings.SESSION_COOKIE_NAME: session}, timeout=10)

    snippet = html.unescape(re.search(r'<pre class="code"><code>(.*?)</code></pre>', page.text, re.DOTALL).group(1))
    assert f'base_url="{gateway_url}/v1"' in snippet
    assert f"create one at {gateway_url}/keys/" in snippet
    assert 'model="auto"' in snippet
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet.replace('"<your API key>"', repr(plain)), {})
    assert printed.getvalue().strip()
