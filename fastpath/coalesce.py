"""Doing for many callers at once what each would do alone: group commit, on an event loop.

A caller hands an item in and waits for its own result. While no flush is
on its way, an item goes out at once (in the next turn of the loop, with
whatever else came in that turn): a caller alone waits no longer than if
it had done the work itself. While a flush is on its way, items gather and
go out together in the next one. Under load, the fixed cost of a flush (a
task message that a worker must take, a database transaction) is shared.

With a `linger`, items also wait for company while they come in faster than
one per flush (the last flush carried more than one and began less than two
lingers ago): the first of them waits up to `linger` seconds, or until
`max_items` are gathered (Kafka's producers linger the same way). A caller
alone still goes out at once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Gathering(Generic[T, R]):
    """One event loop's items waiting for the next flush, and whether a flush is on its way."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.results: asyncio.Future[Sequence[R]] | None = None
        self.flushing = False
        self.lingering: asyncio.TimerHandle | None = None
        self.last_size = 0
        self.last_start = 0.0


class Coalescer(Generic[T, R]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], *, linger: float = 0.0, max_items: int = 0
    ) -> None:
        """`flush` handles a list of items and returns one result per item, in order (or raises for them all)."""
        self._flush = flush
        self._linger = linger
        self._max_items = max_items
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Gathering[T, R]] = (
            weakref.WeakKeyDictionary()
        )
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        gathering = self._per_loop.get(loop)
        if gathering is None:
            gathering = self._per_loop[loop] = _Gathering()
        if gathering.results is None:
            gathering.results = loop.create_future()
            if not gathering.flushing:
                gathering.flushing = True
                # False without a linger (no time elapsed is below zero): items then go out at once.
                coming_fast = gathering.last_size > 1 and loop.time() - gathering.last_start < 2 * self._linger
                if coming_fast:
                    gathering.lingering = loop.call_later(self._linger, self._start, gathering)
                else:
                    loop.call_soon(self._start, gathering)
        results = gathering.results
        index = len(gathering.items)
        gathering.items.append(item)
        if gathering.lingering is not None and self._max_items and len(gathering.items) >= self._max_items:
            gathering.lingering.cancel()
            self._start(gathering)
        # Shielded: a caller that goes away must not cancel the others' flush.
        return (await asyncio.shield(results))[index]

    def _start(self, gathering: _Gathering[T, R]) -> None:
        items, results = gathering.items, gathering.results
        assert results is not None
        gathering.items, gathering.results, gathering.lingering = [], None, None
        loop = asyncio.get_running_loop()
        gathering.last_size, gathering.last_start = len(items), loop.time()
        task = loop.create_task(self._run(gathering, items, results))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, gathering: _Gathering[T, R], items: list[T], results: asyncio.Future[Sequence[R]]) -> None:
        try:
            results.set_result(await self._flush(items))
        except asyncio.CancelledError:
            results.cancel()
            raise
        except Exception as exc:
            results.set_exception(exc)
            # Retrieved here, so that no "never retrieved" warning follows if every caller went away.
            results.exception()
        finally:
            if gathering.items:
                asyncio.get_running_loop().call_soon(self._start, gathering)
            else:
                gathering.flushing = False
