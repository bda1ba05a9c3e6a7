"""A worker killed in the middle of a call: the call is booked once, not twice and not never.

This runs a stack of its own (tests/stack.py), so that the in-process test
worker cannot take the task.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from billing.models import UsageRecord
from routing.calls.dispatch import calls_message
from routing.calls.keys import stream_key
from tests import stack
from tests.call_specs import call_spec
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import wire
from tests.stack import stop, wait_for_records, worker

pytestmark = pytest.mark.django_db(transaction=True)

stack_env = stack.stack_env
web = stack.web

BODY = {"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}], "stream": True}


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _paced_stream(delay: float) -> Any:
    pieces = [event + b"\n\n" for event in wire("openai-chat-stream.sse").split(b"\n\n") if event]
    return FakeOpenAI.stream(pieces=pieces, chunk_delay=delay)


def test_a_worker_killed_after_the_first_token_books_the_call_once(
    web: str, stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, api_key: str
) -> None:
    upstream.queue(_paced_stream(0.5))
    first_worker = worker(stack_env)
    second_worker = None
    try:
        with httpx.stream(
            "POST", f"{web}/v1/chat/completions", json=BODY, headers=_auth(api_key), timeout=60
        ) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            lines = response.iter_lines()
            for line in lines:
                if '"content":"Hello"' in line:
                    break
            stop(first_worker, signal.SIGKILL)
            second_worker = worker(stack_env)
            # The text already shown is not continued by a new run: the stream ends with an error.
            assert '"code":"worker_lost"' in "\n".join(lines)
        records = wait_for_records(request_id)
        assert len(records) == 1
        assert records[0].status == "error"
        assert records[0].error_kind == "worker_lost"
        assert records[0].output_tokens > 0
    finally:
        stop(first_worker, signal.SIGKILL)
        if second_worker is not None:
            stop(second_worker)


def test_a_stream_whose_worker_died_mid_answer_ends_long_before_the_broker_would_hand_its_message_on(
    web: str, stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, api_key: str
) -> None:
    # The broker hands an unacknowledged message on after its visibility timeout: ten minutes here.
    # The web process sees the run's lease lapse and pushes the call again, so a new run ends it.
    patient = {**stack_env, "CELERY_VISIBILITY_TIMEOUT": "600"}
    upstream.queue(_paced_stream(0.5))
    first_worker = worker(patient)
    second_worker = None
    try:
        with httpx.stream(
            "POST", f"{web}/v1/chat/completions", json=BODY, headers=_auth(api_key), timeout=60
        ) as response:
            request_id = response.headers["x-request-id"]
            lines = response.iter_lines()
            for line in lines:
                if '"content":"Hello"' in line:
                    break
            stop(first_worker, signal.SIGKILL)
            killed_at = time.monotonic()
            second_worker = worker(patient)
            rest = "\n".join(lines)
            ended_after = time.monotonic() - killed_at
        assert '"code":"worker_lost"' in rest
        assert ended_after < 120, f"the stream ended {ended_after:.0f} s after its worker died"
        records = wait_for_records(request_id)
        assert [(r.status, r.error_kind) for r in records] == [("error", "worker_lost")]
        assert records[0].output_tokens > 0
        assert len(upstream.requests) == 1, "the call was not sent upstream again"
    finally:
        stop(first_worker, signal.SIGKILL)
        if second_worker is not None:
            stop(second_worker)


def test_a_worker_killed_before_the_first_token_is_replaced_and_the_call_booked_once(
    web: str, stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, api_key: str
) -> None:
    upstream.queue(FakeOpenAI.slow_first_byte(5.0))
    first_worker = worker(stack_env)
    second_worker = None

    def call() -> httpx.Response:
        return httpx.post(f"{web}/v1/chat/completions", json=BODY, headers=_auth(api_key), timeout=60)

    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(call)
            deadline = time.monotonic() + 20
            while not upstream.requests:
                assert time.monotonic() < deadline, "the first worker never called the upstream"
                time.sleep(0.05)
            stop(first_worker, signal.SIGKILL)
            second_worker = worker(stack_env)
            response = pending.result(timeout=60)
        assert response.status_code == 200
        assert "data: [DONE]" in response.text
        records = wait_for_records(response.headers["x-request-id"])
        assert len(records) == 1
        assert records[0].status == "ok"
        assert len(upstream.requests) == 2
    finally:
        stop(first_worker, signal.SIGKILL)
        if second_worker is not None:
            stop(second_worker)


def test_a_worker_killed_with_a_shared_message_half_done_books_each_of_its_calls_once(
    stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, alice: Any
) -> None:
    # One call of the message answers at once, the other streams slowly: the
    # worker dies after the first is booked, before its message is acknowledged.
    upstream.queue(FakeOpenAI.stream())
    upstream.queue(_paced_stream(0.5))
    specs = [call_spec("up/gpt-4o-mini", user_id=alice.pk) for _ in range(2)]
    broker = redis.Redis.from_url(stack_env["REDIS_URL"])
    first_worker = worker(stack_env)
    second_worker = None
    try:
        broker.lpush("celery", calls_message(specs))
        deadline = time.monotonic() + 30
        calls = UsageRecord.objects.filter(request_id__in=[spec.call_id for spec in specs])
        # One call booked, both with text published.
        while not (calls.exists() and all(broker.xlen(stream_key(spec.call_id)) for spec in specs)):
            assert time.monotonic() < deadline, "the first worker never booked one call while streaming the other"
            time.sleep(0.05)
        stop(first_worker, signal.SIGKILL)
        second_worker = worker(stack_env)
        records = [wait_for_records(spec.call_id)[0] for spec in specs]
        assert calls.count() == 2
        assert sorted((r.status, r.error_kind) for r in records) == [("error", "worker_lost"), ("ok", "")]
        assert len(upstream.requests) == 2, "neither call was sent upstream again"
    finally:
        stop(first_worker, signal.SIGKILL)
        if second_worker is not None:
            stop(second_worker)
        broker.close()
