"""Circuits across processes: what one worker learns of a provider, every worker acts on at once.

These run a stack of their own (tests/stack.py): two web processes and two
workers on another Redis database, against the fake OpenAI upstream.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from celery import Celery

from tests import stack
from tests.billing.test_reservations import wait_for
from tests.fakes.openai import FakeOpenAI
from tests.gateway import conftest as gateway
from tests.stack import stop, web_process, worker

pytestmark = pytest.mark.django_db(transaction=True)

stack_env = stack.stack_env
registry = gateway.registry
alice = gateway.alice
api_key = gateway.api_key

MINI = "up/gpt-4o-mini"


def _post(url: str, api_key: str) -> httpx.Response:
    body = {"model": MINI, "messages": [{"role": "user", "content": "Hi"}]}
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}, timeout=90
    )


def _code(answer: httpx.Response) -> str:
    return "ok" if answer.status_code == 200 else str(answer.json()["error"]["code"])


def _wait_for_workers(env: dict[str, str], count: int) -> None:
    """Until `count` workers of the stack answer a ping, so that each may take the calls that follow."""
    app = Celery(broker=env["REDIS_URL"])
    try:
        wait_for(lambda: len(app.control.ping(timeout=0.5)) >= count, f"{count} workers up", timeout=60)
    finally:
        app.close()


def test_three_429s_through_one_worker_open_the_circuit_for_another_worker_too(
    stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, api_key: str
) -> None:
    upstream.queue(*(FakeOpenAI.rate_limited(retry_after=None) for _ in range(3)))
    with ExitStack() as processes:
        urls = [processes.enter_context(web_process(stack_env)) for _ in range(2)]
        first = worker(stack_env)
        processes.callback(stop, first)
        assert [_code(_post(urls[0], api_key)) for _ in range(3)] == ["rate_limited"] * 3
        stop(first)
        second = worker(stack_env)
        processes.callback(stop, second)

        answer = _post(urls[1], api_key)

    assert _code(answer) == "circuit_open"
    assert answer.status_code == 503
    assert 1 <= int(answer.headers["retry-after"]) <= 30
    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=circuit_open"
    assert len(upstream.requests) == 3


def test_the_probe_of_a_half_open_circuit_is_one_call_across_two_workers(
    stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, api_key: str
) -> None:
    up = registry["providers"]["up"]
    # The probe is held at the provider while the others come: longer than the 5 s the registry allows.
    up.timeout_seconds, up.circuit_cooldown_seconds = 30, 1
    up.save()
    # 500s: the recorded 429 asks for 26.6 s, longer than the cooldown.
    upstream.queue(*(FakeOpenAI.server_error() for _ in range(3)))
    with ExitStack() as processes:
        urls = [processes.enter_context(web_process(stack_env)) for _ in range(2)]
        workers = [worker(stack_env, concurrency=8) for _ in range(2)]
        processes.callback(lambda: [stop(w) for w in workers])
        _wait_for_workers(stack_env, 2)
        assert [_code(_post(urls[0], api_key)) for _ in range(3)] == ["unavailable"] * 3
        time.sleep(1.2)
        upstream.hold()
        with ThreadPoolExecutor(max_workers=10) as pool:
            pending = [pool.submit(_post, urls[n % 2], api_key) for n in range(10)]
            wait_for(lambda: sum(p.done() for p in pending) == 9, "9 calls turned away", timeout=30)
            # The three failures, and one probe.
            assert len(upstream.requests) == 4
            upstream.release()
            codes = sorted(_code(p.result()) for p in pending)
        after = _post(urls[1], api_key)

    assert codes == ["circuit_open"] * 9 + ["ok"]
    # The probe answered: the circuit is closed for every process.
    assert _code(after) == "ok"
    assert len(upstream.requests) == 5
