"""The worker's database work runs on a few threads, not on the call loop.

A worker runs its calls on one event loop (routing/calls/worker_loop.py), where
nothing may block and where Django refuses ORM calls anyway. The booking of
a call (its usage record and what reacts to it) and the few reads a call
needs run here instead, on WORKER_DB_THREADS threads with a connection each,
while the call awaits the result. A few threads are enough: SQLite takes one
writer at a time, and on PostgreSQL they draw on the process's pool; and
every thread that touches the database keeps a connection, whose SQLite
page cache grows with the usage table (a connection per task thread made
the worker's memory grow with every call it had booked).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn` on a lane thread and return its result (or raise its exception), leaving the loop free."""
    return await asyncio.wrap_future(_lane().submit(_run_here, fn, *args, **kwargs))


def _lane() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(settings.WORKER_DB_THREADS, thread_name_prefix="db-lane")
        return _executor


def _run_here(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        # What Django does after a request and Celery after a task: drop a
        # connection that broke or outlived CONN_MAX_AGE (PostgreSQL: back to the pool).
        close_old_connections()
