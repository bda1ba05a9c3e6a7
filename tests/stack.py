"""A Switchyard stack of its own for tests that kill, lock or flush what it runs on.

Its web process and worker processes run on a Redis database of their own,
so that the in-process test worker cannot take their tasks, and on the test
database, with short broker and lease timings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection

from billing.models import UsageRecord

ROOT = Path(__file__).resolve().parents[1]
LOG = Path("/tmp/stack.log")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def other_redis_db() -> str:
    parts = urlsplit(settings.REDIS_URL)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))


@pytest.fixture
def stack_env() -> Iterator[dict[str, str]]:
    """The stack's environment; its Redis database is emptied after the test.

    A test's records go with its transaction, so a task message it left behind (one a killed worker never
    acknowledged) would run its call again in a later test, as a call that was never booked.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=other_redis_db(),
        CELERY_VISIBILITY_TIMEOUT="2",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        SWITCHYARD_RUN_LEASE_SECONDS="3",
        DJANGO_SETTINGS_MODULE="switchyard.settings",
        SECRET_KEY=settings.SECRET_KEY,
    )
    yield env
    broker = redis.Redis.from_url(env["REDIS_URL"])
    # A test that stops Redis under its stack runs one of its own, gone by now.
    with contextlib.suppress(redis.ConnectionError):
        broker.flushdb()
    broker.close()


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env=env, start_new_session=True, stdout=LOG.open("ab"), stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def worker(env: dict[str, str], concurrency: int = 4) -> subprocess.Popen[bytes]:
    """A worker of the stack, running `concurrency` task messages (of 1 to 16 calls each) at once."""
    return start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "switchyard",
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "-l",
            "WARNING",
        ],
        env,
    )


@contextlib.contextmanager
def web_process(env: dict[str, str]) -> Iterator[str]:
    """A web process of the stack, started and answering; its URL."""
    port = free_port()
    process = start([sys.executable, "-m", "switchyard.server", "--host", "127.0.0.1", "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("web process did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        stop(process)


@pytest.fixture
def web(stack_env: dict[str, str], celery_worker: Any) -> Iterator[str]:
    with web_process(stack_env) as url:
        yield url


def wait_for_records(request_id: str, timeout: float = 30) -> list[UsageRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = list(UsageRecord.objects.filter(request_id=request_id))
        if records:
            # Give a duplicate booking the chance to show up before counting.
            time.sleep(1.5)
            return list(UsageRecord.objects.filter(request_id=request_id))
        time.sleep(0.1)
    raise AssertionError(f"no usage record for {request_id}")
