"""Two web processes share one rate limit: N processes count as one (a stack of its own: tests/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import openai
import pytest
import redis

from billing.models import ApiKey, RateLimit, UsageRecord
from tests import stack
from tests.billing.test_reservations import wait_for
from tests.fakes.openai import FakeOpenAI
from tests.stack import stop, web_process, worker

pytestmark = pytest.mark.django_db(transaction=True)

stack_env = stack.stack_env
HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture
def stack_redis(stack_env: dict[str, str]) -> Iterator[redis.Redis]:
    """The stack's Redis, without rate-limit state before or after the test (user and key ids are reused)."""
    client = redis.Redis.from_url(stack_env["REDIS_URL"])

    def clear() -> None:
        keys = list(client.scan_iter(match="sy:rl:*", count=1000))
        if keys:
            client.delete(*keys)

    clear()
    yield client
    clear()
    client.close()


def test_two_web_processes_let_through_exactly_the_20_calls_a_minute_of_the_limit_allows(
    stack_env: dict[str, str],
    stack_redis: redis.Redis,
    registry: dict[str, Any],
    upstream: FakeOpenAI,
    alice: Any,
    api_key: str,
) -> None:
    RateLimit.objects.create(api_key=ApiKey.objects.get(user=alice), requests_per_minute=20)
    with ExitStack() as processes:
        urls = [processes.enter_context(web_process(stack_env)) for _ in range(2)]
        workers = [worker(stack_env, concurrency=8)]
        processes.callback(lambda: [stop(w) for w in workers])
        clients = [openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=60) for url in urls]

        def call(n: int) -> str:
            try:
                clients[n % 2].chat.completions.create(model="up/gpt-4o-mini", messages=HELLO)
            except openai.RateLimitError as refusal:
                assert refusal.code == "rate_limit_exceeded"
                return "refused"
            return "answered"

        with ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(call, range(40)))

    assert results.count("answered") == 20 and results.count("refused") == 20
    # Each answered call is booked a moment after its answer, and only those.
    wait_for(lambda: UsageRecord.objects.filter(user=alice).count() == 20, "the 20 answered calls booked")
    assert UsageRecord.objects.filter(user=alice).count() == 20
