"""Rate limits per API key, user and team, through /v1 with the OpenAI SDK, shared by every process through Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import redis

from billing.models import ApiKey, RateLimit, Team, UsageRecord
from billing.ratelimits.config import CONF_PREFIX, LOADED_KEY, rate_limits_publish
from billing.ratelimits.limiter import duration, rate_limits_take
from tests.billing.test_reservations import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture(autouse=True)
def no_limits_left_behind() -> Iterator[None]:
    yield
    RateLimit.objects.all().delete()
    rate_limits_publish()


def key_of(alice: Any) -> ApiKey:
    return ApiKey.objects.get(user=alice)


def test_a_keys_requests_per_minute_are_counted_down_in_openais_headers_then_refused(
    client: openai.OpenAI, alice: Any
) -> None:
    RateLimit.objects.create(api_key=key_of(alice), requests_per_minute=3)

    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="up/gpt-4o-mini", messages=HELLO)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO)
    error = refused.value
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert error.body["message"].startswith(
        "Rate limit reached for the API key: 3 requests per minute. Please try again in"
    )
    assert 1 <= int(error.response.headers["retry-after"]) <= 20
    # A refused call is not booked: only the three answered ones are, each a moment after its answer.
    wait_for(lambda: UsageRecord.objects.count() == 3, "the 3 answered calls booked")
    time.sleep(0.2)
    assert UsageRecord.objects.count() == 3


def test_the_window_slides_a_limit_of_60_never_lets_a_second_burst_through(client: openai.OpenAI, alice: Any) -> None:
    RateLimit.objects.create(api_key=key_of(alice), requests_per_minute=60)
    key = key_of(alice)

    async def burst(n: int) -> list[bool]:
        checks = await asyncio.gather(
            *(
                rate_limits_take(user_id=alice.pk, team_id=None, api_key_id=key.pk, requests=1, tokens=_no_tokens)
                for _ in range(n)
            )
        )
        return [check.refusal is None for check in checks]

    assert sum(asyncio.run(burst(70))) == 60
    # One request's worth of time later, exactly one more, not another minute's worth.
    time.sleep(1.1)
    assert sum(asyncio.run(burst(5))) == 1


async def _no_tokens() -> int:
    raise AssertionError("a requests-only limit never counts tokens")


def test_tokens_per_minute_count_the_prompt_and_max_tokens(client: openai.OpenAI, alice: Any) -> None:
    RateLimit.objects.create(user=alice, tokens_per_minute=500)

    raw = client.chat.completions.with_raw_response.create(model="up/gpt-4o-mini", messages=HELLO, max_tokens=300)
    assert raw.headers["x-ratelimit-limit-tokens"] == "500"
    assert 190 <= int(raw.headers["x-ratelimit-remaining-tokens"]) <= 200
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, max_tokens=300)
    assert refused.value.type == "tokens"
    # More than a whole minute allows: waiting would not help, and the SDK is told not to retry.
    with pytest.raises(openai.RateLimitError) as hopeless:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, max_tokens=4000)
    assert "more than the user's limit of 500 tokens per minute" in hopeless.value.message
    assert hopeless.value.response.headers["x-should-retry"] == "false"


def test_a_teams_limit_for_each_key_applies_unless_the_key_has_its_own(
    client: openai.OpenAI, alice: Any, api_key: str
) -> None:
    team = Team.objects.create(name="Acme", slug="acme")
    key = key_of(alice)
    key.team = team
    key.save()
    RateLimit.objects.create(team=team, per_key=True, requests_per_minute=1)
    client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO)
    RateLimit.objects.create(api_key=key, requests_per_minute=10)
    raw = client.chat.completions.with_raw_response.create(model="up/gpt-4o-mini", messages=HELLO)
    assert raw.headers["x-ratelimit-limit-requests"] == "10"


def test_a_flushed_redis_publishes_the_limits_again_before_limiting(
    client: openai.OpenAI, alice: Any, redis_client: redis.Redis
) -> None:
    RateLimit.objects.create(api_key=key_of(alice), requests_per_minute=1)
    client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO)
    redis_client.delete(LOADED_KEY, *redis_client.scan_iter(match=f"{CONF_PREFIX}*"))

    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO)
    assert redis_client.exists(LOADED_KEY)


def test_an_unlimited_caller_gets_no_rate_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="up/gpt-4o-mini", messages=HELLO)
    assert not any(name.startswith("x-ratelimit-") for name in raw.headers)


@pytest.mark.parametrize(("ms", "text"), [(20, "20ms"), (1500, "1.5s"), (59_000, "59s"), (360_000, "6m0s")])
def test_waits_are_written_as_openai_writes_them(ms: int, text: str) -> None:
    assert duration(ms) == text
