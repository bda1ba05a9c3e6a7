"""A worker killed in the middle of a call: the call is booked once, not twice and not never.

This runs its own web process and worker processes on a Redis database of its
own, so that the in-process test worker cannot take the task.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

from billing.models import UsageRecord
from routing.calls.dispatch import calls_message
from routing.calls.keys import stream_key
from tests.call_specs import call_spec
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import wire

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _other_redis_db() -> str:
    parts = urlsplit(settings.REDIS_URL)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))


@pytest.fixture
def stack_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=_database_url(),
        REDIS_URL=_other_redis_db(),
        CELERY_VISIBILITY_TIMEOUT="2",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        SWITCHYARD_RUN_LEASE_SECONDS="3",
        DJANGO_SETTINGS_MODULE="switchyard.settings",
        SECRET_KEY=settings.SECRET_KEY,
    )
    return env


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, start_new_session=True, stdout=open("/tmp/stack.log", "ab"), stderr=subprocess.STDOUT
    )


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return _start(
        [sys.executable, "-m", "celery", "-A", "switchyard", "worker", "--pool=threads", "--concurrency=4", "-l", "WARNING"],
        env,
    )


@pytest.fixture
def web(stack_env: dict[str, str], celery_worker: Any) -> Iterator[str]:
    port = _free_port()
    process = _start(
        [sys.executable, "-m", "uvicorn", "switchyard.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        stack_env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/v1/models", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("web process did not start") from None
            time.sleep(0.2)
    yield url
    _stop(process)


def _wait_for_records(request_id: str, timeout: float = 30) -> list[UsageRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = list(UsageRecord.objects.filter(request_id=request_id))
        if records:
            # Give a duplicate booking the chance to show up before counting.
            time.sleep(1.5)
            return list(UsageRecord.objects.filter(request_id=request_id))
        time.sleep(0.1)
    raise AssertionError(f"no usage record for {request_id}")


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
    first_worker = _worker(stack_env)
    second_worker = None
    try:
        with httpx.stream("POST", f"{web}/v1/chat/completions", json=BODY, headers=_auth(api_key), timeout=60) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            lines = response.iter_lines()
            for line in lines:
                if '"content":"Hello"' in line:
                    break
            _stop(first_worker, signal.SIGKILL)
            second_worker = _worker(stack_env)
            # The text already shown is not continued by a new run: the stream ends with an error.
            assert '"code":"worker_lost"' in "\n".join(lines)
        records = _wait_for_records(request_id)
        assert len(records) == 1
        assert records[0].status == "error"
        assert records[0].error_kind == "worker_lost"
        assert records[0].output_tokens > 0
    finally:
        _stop(first_worker, signal.SIGKILL)
        if second_worker is not None:
            _stop(second_worker)


def test_a_worker_killed_before_the_first_token_is_replaced_and_the_call_booked_once(
    web: str, stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, api_key: str
) -> None:
    upstream.queue(FakeOpenAI.slow_first_byte(5.0))
    first_worker = _worker(stack_env)
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
            _stop(first_worker, signal.SIGKILL)
            second_worker = _worker(stack_env)
            response = pending.result(timeout=60)
        assert response.status_code == 200
        assert "data: [DONE]" in response.text
        records = _wait_for_records(response.headers["x-request-id"])
        assert len(records) == 1
        assert records[0].status == "ok"
        assert len(upstream.requests) == 2
    finally:
        _stop(first_worker, signal.SIGKILL)
        if second_worker is not None:
            _stop(second_worker)


def test_a_worker_killed_with_a_shared_message_half_done_books_each_of_its_calls_once(
    stack_env: dict[str, str], registry: dict[str, Any], upstream: FakeOpenAI, alice: Any
) -> None:
    # One call of the message answers at once, the other streams slowly: the
    # worker dies after the first is booked, before its message is acknowledged.
    upstream.queue(FakeOpenAI.stream())
    upstream.queue(_paced_stream(0.5))
    specs = [call_spec("up/gpt-4o-mini", user_id=alice.pk) for _ in range(2)]
    broker = redis.Redis.from_url(stack_env["REDIS_URL"])
    first_worker = _worker(stack_env)
    second_worker = None
    try:
        broker.lpush("celery", calls_message(specs))
        deadline = time.monotonic() + 30
        calls = UsageRecord.objects.filter(request_id__in=[spec.call_id for spec in specs])
        # One call booked, both with text published.
        while not (calls.exists() and all(broker.xlen(stream_key(spec.call_id)) for spec in specs)):
            assert time.monotonic() < deadline, "the first worker never booked one call while streaming the other"
            time.sleep(0.05)
        _stop(first_worker, signal.SIGKILL)
        second_worker = _worker(stack_env)
        records = [_wait_for_records(spec.call_id)[0] for spec in specs]
        assert calls.count() == 2
        assert sorted((r.status, r.error_kind) for r in records) == [("error", "worker_lost"), ("ok", "")]
        assert len(upstream.requests) == 2, "neither call was sent upstream again"
    finally:
        _stop(first_worker, signal.SIGKILL)
        if second_worker is not None:
            _stop(second_worker)
        broker.close()
