"""The worker's database work runs on a few threads, not on every Celery thread.

Django opens one connection per thread, and a worker runs its calls on up to
CELERY_CONCURRENCY (256) threads. When each of them booked its own calls,
each held a connection, and on SQLite each connection's page cache filled up
as the usage table grew: the worker's memory grew by a quarter between 1,000
and 20,000 calls. SQLite takes one writer at a time anyway, so hundreds of
writers only queued on its lock; on PostgreSQL they queued on the pool. The
booking of a call (its usage record and what reacts to it) runs here instead,
on WORKER_DB_THREADS threads with a connection each, while the call's own
thread waits for it.
"""

from __future__ import annotations

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
_in_lane = threading.local()


def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn` on a lane thread and return its result (or raise its exception)."""
    if getattr(_in_lane, "active", False):
        return fn(*args, **kwargs)
    return _lane().submit(_run_here, fn, *args, **kwargs).result()


def _lane() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                settings.WORKER_DB_THREADS, thread_name_prefix="db-lane", initializer=_mark_lane_thread
            )
        return _executor


def _mark_lane_thread() -> None:
    _in_lane.active = True


def _run_here(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        # What Django does after a request and Celery after a task: drop a
        # connection that broke or outlived CONN_MAX_AGE (PostgreSQL: back to the pool).
        close_old_connections()
