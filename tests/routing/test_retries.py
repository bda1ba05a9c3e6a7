"""Retries: a route tries a failing model again, with backoff, before it moves down its chain.

Through the real gateway and the in-process worker, against the fake OpenAI upstream.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from routing.providers.errors import ErrorKind, ProviderError
from routing.resilience.retries import RetryPolicy
from tests.fakes.openai import FakeOpenAI
from tests.gateway import conftest as gateway
from tests.usage_records import booked

registry = gateway.registry
alice = gateway.alice
api_key = gateway.api_key

MINI = "up/gpt-4o-mini"


@pytest.fixture
def call(gateway_url: str, api_key: str, celery_worker: Any, registry: dict[str, Any]) -> Any:
    """POST a chat completion to the route `auto` (up/gpt-4o-mini, then up2/gpt-4o); the response, read."""

    def post(*, stream: bool = False) -> httpx.Response:
        body = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
        headers = {"authorization": f"Bearer {api_key}"}
        return httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=30)

    return post


def _retries(registry: dict[str, Any], attempts: int, base_delay: float = 0.05) -> None:
    route = registry["routes"]["auto"]
    route.retry_attempts, route.retry_base_delay_seconds = attempts, base_delay
    route.save()


@pytest.mark.django_db(transaction=True)
def test_a_model_that_fails_before_its_first_token_is_tried_again_and_every_try_is_in_the_trace(
    call: Any, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    _retries(registry, 2)
    upstream.queue(FakeOpenAI.server_error(), FakeOpenAI.overloaded())

    answer = call()

    assert answer.status_code == 200
    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=unavailable, {MINI}=overloaded, {MINI}=ok"
    assert [r.json()["model"] for r in upstream.requests] == ["gpt-4o-mini"] * 3
    record = booked(answer.headers["x-request-id"])
    assert [a["outcome"] for a in record.attempts] == ["unavailable", "overloaded", "ok"]
    # Tried three times, but one model: not a fallback.
    assert record.fell_back is False


@pytest.mark.django_db(transaction=True)
def test_when_its_retries_are_spent_the_call_moves_down_the_chain(
    call: Any, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    _retries(registry, 1)
    upstream.queue(FakeOpenAI.server_error(), FakeOpenAI.server_error())

    answer = call()

    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=unavailable, {MINI}=unavailable, up2/gpt-4o=ok"
    assert booked(answer.headers["x-request-id"]).fell_back is True


@pytest.mark.django_db(transaction=True)
def test_a_retry_waits_for_the_providers_retry_after(call: Any, upstream: FakeOpenAI, registry: dict[str, Any]) -> None:
    _retries(registry, 1)
    upstream.queue(FakeOpenAI.rate_limited(retry_after="1"))
    started = time.monotonic()

    answer = call()

    assert time.monotonic() - started >= 1
    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=rate_limited, {MINI}=ok"


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_would_end_past_the_calls_deadline_moves_down_the_chain_at_once(
    call: Any, upstream: FakeOpenAI, registry: dict[str, Any], settings: Any
) -> None:
    settings.CALL_DEADLINE_SECONDS = 3
    _retries(registry, 3)
    upstream.queue(FakeOpenAI.rate_limited(retry_after="5"))
    started = time.monotonic()

    answer = call()

    assert time.monotonic() - started < 2
    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=rate_limited, up2/gpt-4o=ok"


@pytest.mark.django_db(transaction=True)
def test_no_retry_once_text_has_reached_the_client(call: Any, upstream: FakeOpenAI, registry: dict[str, Any]) -> None:
    _retries(registry, 2)
    upstream.queue(FakeOpenAI.cut_mid_stream())

    answer = call(stream=True)

    assert "Hello" in answer.text
    assert '"code":"unavailable"' in answer.text
    assert len(upstream.requests) == 1
    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=answering"


def test_backoff_is_full_jitter_doubling_at_least_the_retry_after_and_only_for_failures_a_moment_may_cure() -> None:
    policy = RetryPolicy(attempts=3, base_delay_seconds=0.1)
    overloaded = ProviderError(ErrorKind.OVERLOADED, "busy")

    waits = {retry: [policy.delay(retry, overloaded) for _ in range(200)] for retry in (1, 2, 3)}

    for retry, delays in waits.items():
        assert all(d is not None and 0 <= d <= 0.1 * 2 ** (retry - 1) for d in delays)
    assert max(d or 0 for d in waits[3]) > 0.2
    assert policy.delay(4, overloaded) is None
    assert policy.delay(1, ProviderError(ErrorKind.BAD_REQUEST, "no")) is None
    assert policy.delay(1, ProviderError(ErrorKind.RATE_LIMITED, "slow down", retry_after=2)) == 2
