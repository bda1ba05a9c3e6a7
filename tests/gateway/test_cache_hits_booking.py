"""A cache hit answered by the web while no worker runs: booked once, when a worker comes back.

This runs a stack of its own (tests/stack.py), so that the in-process test
worker cannot take the booking message.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis

from billing.models import UsageRecord
from tests import stack
from tests.fakes.openai import FakeOpenAI
from tests.stack import stop, wait_for_records, worker

pytestmark = pytest.mark.django_db(transaction=True)

stack_env = stack.stack_env
web = stack.web

HELLO = [{"role": "user", "content": "Hello!"}]


def _text(response: httpx.Response, *, stream: bool) -> str:
    if not stream:
        return str(response.json()["choices"][0]["message"]["content"])
    chunks = [
        json.loads(line.removeprefix("data: ")) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_a_hit_answered_while_no_worker_runs_is_booked_once_when_one_comes_back(
    web: str, stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, api_key: str, stream: bool
) -> None:
    body = {"model": "up/gpt-4o-mini", "messages": HELLO, "metadata": {"cache": "true"}, "stream": stream}
    headers = {"Authorization": f"Bearer {api_key}"}
    broker = redis.Redis.from_url(stack_env["REDIS_URL"])
    first_worker = worker(stack_env)
    second_worker = None
    try:
        missed = httpx.post(f"{web}/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert (missed.status_code, missed.headers["x-switchyard-cache"]) == (200, "miss")
        [first] = wait_for_records(missed.headers["x-request-id"])
        stop(first_worker)

        hit = httpx.post(f"{web}/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert (hit.status_code, hit.headers["x-switchyard-cache"]) == (200, "hit")
        assert _text(hit, stream=stream) == _text(missed, stream=stream) != ""
        hit_id = hit.headers["x-request-id"]
        time.sleep(0.5)
        assert not UsageRecord.objects.filter(request_id=hit_id).exists(), "no worker has booked it yet"
        assert broker.llen("celery") == 1, "its booking waits in the queue"

        second_worker = worker(stack_env)
        [again] = wait_for_records(hit_id)
        assert (again.cache_hit, again.cost_usd, again.cache_saving_usd) == (True, Decimal(0), first.cost_usd)
        assert (again.input_tokens, again.output_tokens) == (first.input_tokens, first.output_tokens)
        assert [(a["model"], a["outcome"]) for a in again.attempts] == [("up/gpt-4o-mini", "cache_hit")]
        assert again.status == "ok"
        assert len([r for r in upstream.requests if r.path == "/v1/chat/completions"]) == 1
    finally:
        stop(first_worker)
        if second_worker is not None:
            stop(second_worker)
        broker.close()
