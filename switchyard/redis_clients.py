"""One pooled Redis client per process (sync) and per event loop (async), and the hot path's lean client."""

from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

from switchyard.resp import BlockingPool, RespClient

# A blocked XREAD must return before the socket timeout; callers block for
# at most STREAM_BLOCK_MS, well under this.
SOCKET_TIMEOUT = 10.0

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_resp_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RespClient] = weakref.WeakKeyDictionary()
_blocking_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BlockingPool] = weakref.WeakKeyDictionary()


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
    """The client of the running event loop (an asyncio client cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=5,
            health_check_interval=30,
            max_connections=4096,
        )
        _async_clients[loop] = client
    return client


def get_resp() -> RespClient:
    """The running loop's lean client (switchyard/resp.py), for the commands of every call."""
    loop = asyncio.get_running_loop()
    client = _resp_clients.get(loop)
    if client is None:
        client = RespClient(settings.REDIS_URL, timeout=SOCKET_TIMEOUT, connect_timeout=5)
        _resp_clients[loop] = client
    return client


def get_blocking_resp() -> BlockingPool:
    """The running loop's connections for blocking reads (XREAD BLOCK of the relays)."""
    loop = asyncio.get_running_loop()
    pool = _blocking_pools.get(loop)
    if pool is None:
        # As many idle connections kept as relays commonly wait at once.
        pool = BlockingPool(settings.REDIS_URL, timeout=SOCKET_TIMEOUT, connect_timeout=5, keep=512)
        _blocking_pools[loop] = pool
    return pool
