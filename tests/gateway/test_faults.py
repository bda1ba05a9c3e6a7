"""Faults injected under calls: each call still ends for its client and is booked exactly once.

- a call the worker itself fails on ends with an error event and its record;
- a record the database refuses for a while (locked) is booked once it is
  free, not lost, and the spend counters equal the records;
- a call whose task message is flushed from Redis before any worker took it
  is pushed again by the web process that waits for it, and answered;
- a call queued when Redis is killed is answered once Redis is back, its
  queue kept on disk (the web waits for Redis while nothing was answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from django.db import connection
from django.utils import timezone

import devstack
from billing.caps.counters import counter_for
from billing.models import SpendCap, UsageRecord
from billing.money import to_units
from routing.calls.dispatch import calls_push
from routing.calls.events import Failed
from routing.providers.types import ChatRequest, Message
from tests import stack
from tests.call_specs import call_spec
from tests.call_streams import stream_events
from tests.stack import stop, worker
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

stack_env = stack.stack_env
web = stack.web

HELLO = {"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def test_a_call_the_worker_fails_on_ends_with_an_error_event_and_one_record(
    registry: dict[str, Any], alice: Any, celery_worker: Any
) -> None:
    # A lone surrogate cannot be encoded: the edge refuses it, so it is handed to the worker directly here.
    poison = ChatRequest(messages=(Message(role="user", content="Hello \ud800"),))
    spec = call_spec("up/gpt-4o-mini", request=poison, user_id=alice.pk)

    asyncio.run(calls_push([spec]))

    record = booked(spec.call_id)
    assert (record.status, record.error_kind) == ("error", "internal_error")
    terminal = stream_events(spec.call_id)[-1]
    assert isinstance(terminal, Failed)
    assert (terminal.error_kind, terminal.status) == ("internal_error", 500)
    assert UsageRecord.objects.filter(request_id=spec.call_id).count() == 1


@contextlib.contextmanager
def usage_table_locked() -> Iterator[None]:
    """Hold a lock that keeps every other connection from inserting usage records, until the block ends."""
    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"].endswith("sqlite3"):
        lock = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params) as lock:
        # SHARE: inserts wait (they need ROW EXCLUSIVE), reads do not.
        lock.execute("LOCK TABLE billing_usagerecord IN SHARE MODE")
        yield
        lock.rollback()


@pytest.fixture
def impatient_database(stack_env: dict[str, str]) -> dict[str, str]:
    """The stack's database gives up on a lock after half a second, as a busy database would far later."""
    if connection.settings_dict["ENGINE"].endswith("sqlite3"):
        stack_env["SWITCHYARD_SQLITE_BUSY_TIMEOUT"] = "0.5"
    else:
        stack_env["DATABASE_URL"] += "?options=-c%20lock_timeout%3D500"
    return stack_env


def test_a_call_whose_record_the_database_refuses_for_a_while_is_booked_once_when_it_frees_up(
    impatient_database: dict[str, str], web: str, registry: dict[str, Any], alice: Any, api_key: str
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("10"))
    running = worker(impatient_database)
    try:
        # One call first: the key's principal and last use are then in Redis, not read from the database.
        first = httpx.post(f"{web}/v1/chat/completions", json=HELLO, headers=_auth(api_key), timeout=60)
        assert first.status_code == 200
        booked(first.headers["x-request-id"], timeout=30)
        with usage_table_locked():
            answer = httpx.post(f"{web}/v1/chat/completions", json=HELLO, headers=_auth(api_key), timeout=60)
            assert answer.status_code == 200, "the client has its answer while the record waits"
            time.sleep(3)
            assert not UsageRecord.objects.filter(request_id=answer.headers["x-request-id"]).exists()
        record = booked(answer.headers["x-request-id"], timeout=30)
        assert record.status == "ok"
        assert str(record.cost_usd) == answer.headers["x-switchyard-cost-usd"]
        counter = counter_for("user", alice.pk, "month", timezone.now()).key
        spent = sum(UsageRecord.objects.filter(user=alice).values_list("cost_usd", flat=True), Decimal(0))
        counted = redis.Redis.from_url(impatient_database["REDIS_URL"]).get(counter)
        # Counted once, or (a booking that cannot tell whether it counted) dropped for the next reader to rebuild
        # from the records; never counted twice.
        assert counted is None or int(counted) == to_units(spent)
        assert UsageRecord.objects.count() == 2
    finally:
        stop(running)


def test_a_call_flushed_from_the_queue_before_a_worker_took_it_is_pushed_again_and_answered(
    stack_env: dict[str, str], web: str, registry: dict[str, Any], api_key: str
) -> None:
    broker = redis.Redis.from_url(stack_env["REDIS_URL"])
    running = None
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post, f"{web}/v1/chat/completions", json=HELLO, headers=_auth(api_key), timeout=90
            )
            deadline = time.monotonic() + 20
            while not broker.llen("celery"):
                assert time.monotonic() < deadline, "the call never reached the queue"
                time.sleep(0.05)
            # No worker has taken it: Redis loses the message (and everything else) before one does.
            broker.flushdb()
            running = worker(stack_env)
            answer = pending.result(timeout=90)
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"]
        booked(answer.headers["x-request-id"], timeout=30)
        assert UsageRecord.objects.count() == 1
    finally:
        if running is not None:
            stop(running)
        broker.close()


def test_a_call_lost_again_and_again_is_given_up_with_a_503_and_booked_as_failed(
    stack_env: dict[str, str], web: str, registry: dict[str, Any], api_key: str
) -> None:
    broker = redis.Redis.from_url(stack_env["REDIS_URL"])
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post, f"{web}/v1/chat/completions", json=HELLO, headers=_auth(api_key), timeout=90
            )
            # No worker, and a Redis that keeps losing what it holds, until the client has its answer.
            deadline = time.monotonic() + 80
            while not pending.done():
                assert time.monotonic() < deadline, "the client is still waiting"
                broker.flushdb()
                time.sleep(0.5)
            answer = pending.result()
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert (error["code"], error["type"]) == ("call_lost", "server_error")
        record = booked(answer.headers["x-request-id"])
        assert (record.status, record.error_kind, record.cost_usd) == ("error", "lost", None)
    finally:
        broker.close()


@pytest.fixture
def persistent_redis(stack_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[int, Path, list[devstack.Child]]]:
    """The stack's Redis is one of its own that keeps an append-only file, as make run's does."""
    port, children = devstack.free_port(), []
    stack_env["REDIS_URL"] = devstack.start_redis(port, port_hint="", into=children, directory=tmp_path, persist=True)
    yield port, tmp_path, children
    devstack.stop(children)


def test_a_call_queued_when_redis_restarts_is_answered_once_it_is_back(
    persistent_redis: tuple[int, Path, list[devstack.Child]],
    stack_env: dict[str, str],
    web: str,
    registry: dict[str, Any],
    api_key: str,
) -> None:
    port, directory, children = persistent_redis
    broker = redis.Redis.from_url(stack_env["REDIS_URL"])
    running = None
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post, f"{web}/v1/chat/completions", json=HELLO, headers=_auth(api_key), timeout=90
            )
            deadline = time.monotonic() + 20
            while not broker.llen("celery"):
                assert time.monotonic() < deadline, "the call never reached the queue"
                time.sleep(0.05)
            # Killed, not stopped: what it had written to its append-only file is all it keeps.
            [killed] = children
            killed.signal_group(signal.SIGKILL)
            killed.process.wait(timeout=10)
            children.clear()
            devstack.start_redis(port, port_hint="", into=children, directory=directory, persist=True)
            running = worker(stack_env)
            answer = pending.result(timeout=90)
        assert answer.status_code == 200, answer.text
        booked(answer.headers["x-request-id"], timeout=30)
        assert UsageRecord.objects.count() == 1
    finally:
        if running is not None:
            stop(running)
        broker.close()
