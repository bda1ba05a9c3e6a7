"""One pooled Redis client per process (sync) and per event loop (async), and the hot path's lean client."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from django.conf import settings

from fastpath.resp import RespClient
from fastpath.stream_hub import StreamHub

# A blocked XREAD must return before the socket timeout; the stream hub
# blocks for at most READ_BLOCK_MS (fastpath/stream_hub.py), well under this.
SOCKET_TIMEOUT = 10.0

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()

T = TypeVar("T")
# An asyncio client cannot cross event loops: one of each kind per loop.
_per_loop: dict[str, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]] = {
    "redis-py": weakref.WeakKeyDictionary(),
    "resp": weakref.WeakKeyDictionary(),
    "stream-hub": weakref.WeakKeyDictionary(),
}


def _of_running_loop(kind: str, make: Callable[[], T]) -> T:
    clients = _per_loop[kind]
    loop = asyncio.get_running_loop()
    client: T | None = clients.get(loop)
    if client is None:
        client = clients[loop] = make()
    return client


def get_redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_timeout=SOCKET_TIMEOUT,
                    socket_connect_timeout=5,
                    health_check_interval=30,
                    max_connections=1024,
                )
    return _sync_client


def get_async_redis() -> aioredis.Redis:
    """The running event loop's redis-py client."""
    return _of_running_loop(
        "redis-py",
        lambda: aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=5,
            health_check_interval=30,
            max_connections=4096,
        ),
    )


def get_resp() -> RespClient:
    """The running loop's lean client (fastpath/resp.py), for the commands of every call."""
    return _of_running_loop("resp", lambda: RespClient(settings.REDIS_URL, timeout=SOCKET_TIMEOUT, connect_timeout=5))


def get_stream_hub() -> StreamHub:
    """The running loop's reader of the streams it follows (the relays' call events), on a connection of its own."""
    return _of_running_loop(
        "stream-hub",
        lambda: StreamHub(RespClient(settings.REDIS_URL, timeout=SOCKET_TIMEOUT, connect_timeout=5), get_resp()),
    )
