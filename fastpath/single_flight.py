"""Concurrent callers that need the same thing loaded share one load, on an event loop.

When a cached value goes stale (a key's cached principal expires, the spend
caps' rules age out, the registry changes), every call that arrives before
it is loaded again would otherwise load it too: on a busy web process, a
queue of identical database reads on asgiref's one thread, behind which
every call waits. Here the first caller starts the load, and the others
await the same one.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[K, asyncio.Task[V]]] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """`load()`'s result; a call for a `key` whose load is under way awaits that load instead.

        The load runs as a task of its own: a caller that goes away does not
        cancel it for the others.
        """
        loop = asyncio.get_running_loop()
        flights = self._flights.get(loop)
        if flights is None:
            flights = self._flights[loop] = {}
        task = flights.get(key)
        if task is None:
            task = loop.create_task(_awaited(load))
            flights[key] = task
            task.add_done_callback(lambda done: _landed(flights, key, done))
        return await asyncio.shield(task)


async def _awaited(load: Callable[[], Awaitable[V]]) -> V:
    return await load()


def _landed(flights: dict[K, asyncio.Task[V]], key: K, task: asyncio.Task[V]) -> None:
    if flights.get(key) is task:
        del flights[key]
    # Retrieved, so that no "never retrieved" warning follows when every caller went away.
    if not task.cancelled():
        task.exception()
