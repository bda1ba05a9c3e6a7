"""Session-wide fixtures.

`make test` (devstack/) starts an embedded Redis on a free port
and exports its REDIS_URL before pytest starts; with REDIS_URL already set,
that Redis is used instead and may be shared, so tests only ever delete the
keys they created.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from django.conf import settings
from django.db import connections

from routing.resilience.cache import CACHE_PREFIX
from routing.resilience.circuits import CIRCUIT_PREFIX
from switchyard.celery import app as celery_app
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import serve


@pytest.fixture(scope="session")
def redis_url() -> str:
    """settings.REDIS_URL, once a Redis server has answered PING there."""
    url: str = settings.REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"No Redis answers at REDIS_URL ({exc}). Run the suite with `make test`, or "
            "`.venv/bin/python -m devstack test -- <pytest args>`, which start one."
        )
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test; redis_client deletes the keys under it afterwards."""
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis_client(redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{redis_prefix}*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def circuit_databases(redis_url: str) -> Iterator[list[redis.Redis]]:
    """The test Redis database and the one tests/stack.py's processes use: both hold circuits."""
    from tests.stack import other_redis_db

    clients = [redis.Redis.from_url(url) for url in (redis_url, other_redis_db())]
    yield clients
    for client in clients:
        client.close()


@pytest.fixture(autouse=True)
def circuits_closed(circuit_databases: list[redis.Redis]) -> None:
    """Every test starts with every circuit closed: one that an earlier test opened would skip its models."""
    for client in circuit_databases:
        keys = list(client.scan_iter(match=f"{CIRCUIT_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(autouse=True)
def response_cache_empty(circuit_databases: list[redis.Redis]) -> None:
    """Every test starts with an empty response cache: the ids of its users and teams may be an earlier test's."""
    for client in circuit_databases:
        keys = list(client.scan_iter(match=f"{CACHE_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Any]:
    """A real Celery worker (threads pool) of the project's app, on the test Redis and test database.

    Tests that use it need `django_db(transaction=True)`: the worker's threads
    have their own connections and see only committed rows.
    """
    with (
        django_db_blocker.unblock(),
        start_worker(
            celery_app, pool="threads", concurrency=8, perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING"
        ) as worker,
    ):
        yield worker
    # The PostgreSQL pool is shared by every thread; close it so that the
    # test database can be dropped at the end of the session.
    for connection in connections.all(initialized_only=True):
        if hasattr(connection, "close_pool"):
            connection.close_pool()


@pytest.fixture(autouse=True)
def calls_settled() -> Iterator[None]:
    """After each test, wait for the in-process worker's calls to end before the database is flushed.

    An API call's record is inserted just after its client has the answer; a
    flush (TRUNCATE on PostgreSQL) racing that insert can deadlock.
    """
    yield
    deadline = time.monotonic() + 30
    while (worker_state.active_requests or worker_state.reserved_requests) and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(scope="session")
def gateway_url(django_db_setup: Any) -> Iterator[str]:
    """The whole site (ASGI, so SSE streams) under a real uvicorn on 127.0.0.1, with switchyard.server's options."""
    from switchyard.asgi import application
    from switchyard.server import options

    with serve(application, **options()) as url:
        yield url


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def upstream(fake_openai: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    fake, _ = fake_openai
    fake.reset()
    return fake
