"""The event loop on which a worker process runs the I/O of all its calls.

A call spends nearly all its life waiting on a provider's stream. With one
thread per call (Celery's threads pool) every chunk would hand the GIL from
one thread to another, which costs a worker several times the CPU of the
call itself (BENCHMARKS.md, first rounds). On one event loop, with aiohttp
to the provider and pipelined Redis commands for the events, it does not.
So a Celery task only hands its call to this loop and waits for the end (its
thread blocked, costing nothing), which keeps acks_late's promise: a
message is acknowledged only once its call has ended.

The loop runs on its own daemon thread, started on first use, with uvloop.
Nothing on it may block: database work goes through routing.calls.db_lane.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the process's call loop and wait for its result (or exception)."""
    return asyncio.run_coroutine_threadsafe(coro, _get_loop()).result()


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = uvloop.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(target=_run_forever, args=(loop, started), name="call-loop", daemon=True)
            thread.start()
            started.wait()
            _loop = loop
            atexit.register(_close, loop)
        return _loop


def _run_forever(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Close the pooled connections that live on the loop, so that none is left for the garbage collector."""
    from routing.providers.http import close_upstream_session

    with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
        asyncio.run_coroutine_threadsafe(close_upstream_session(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
