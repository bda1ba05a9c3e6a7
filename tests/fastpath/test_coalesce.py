"""Coalescer: a caller alone is served at once; callers that come while a flush runs share the next one."""

from __future__ import annotations

import asyncio

import pytest

from fastpath.coalesce import Coalescer


class Recorder:
    """A flush that records the batches it is given and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [item * 10 for item in items]


def test_a_caller_alone_is_flushed_at_once_with_its_own_result() -> None:
    async def scenario() -> None:
        flush = Recorder()
        coalescer = Coalescer(flush)
        assert await coalescer.submit(1) == 10
        assert await coalescer.submit(2) == 20
        assert flush.batches == [[1], [2]]

    asyncio.run(scenario())


def test_callers_of_one_turn_share_a_flush_and_each_gets_its_result() -> None:
    async def scenario() -> None:
        flush = Recorder()
        coalescer = Coalescer(flush)
        assert await asyncio.gather(*(coalescer.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
        assert flush.batches == [[0, 1, 2, 3, 4]]

    asyncio.run(scenario())


def test_callers_that_come_while_a_flush_runs_go_together_in_the_next() -> None:
    async def scenario() -> None:
        flush = Recorder()
        flush.release.clear()
        coalescer = Coalescer(flush)
        first = asyncio.ensure_future(coalescer.submit(1))
        while not flush.batches:
            await asyncio.sleep(0)
        later = [asyncio.ensure_future(coalescer.submit(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0.01)
        assert flush.batches == [[1]], "nothing more goes out while the first flush runs"
        flush.release.set()
        assert await first == 10
        assert await asyncio.gather(*later) == [20, 30, 40]
        assert flush.batches == [[1], [2, 3, 4]]

    asyncio.run(scenario())


def test_a_failed_flush_raises_for_its_callers_and_the_next_flush_still_runs() -> None:
    async def scenario() -> None:
        flush = Recorder()
        coalescer = Coalescer(flush)
        flush.fail = ConnectionError("redis is down")
        outcomes = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
        assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
        flush.fail = None
        assert await coalescer.submit(3) == 30

    asyncio.run(scenario())


def test_a_caller_that_goes_away_does_not_cancel_the_others_flush() -> None:
    async def scenario() -> None:
        flush = Recorder()
        flush.release.clear()
        coalescer = Coalescer(flush)
        leaving = asyncio.ensure_future(coalescer.submit(1))
        staying = asyncio.ensure_future(coalescer.submit(2))
        while not flush.batches:
            await asyncio.sleep(0)
        leaving.cancel()
        flush.release.set()
        assert await staying == 20
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert flush.batches == [[1, 2]]

    asyncio.run(scenario())


def test_each_event_loop_gathers_its_own_callers() -> None:
    flush = Recorder()
    coalescer = Coalescer(flush)

    async def one(item: int) -> int:
        return await coalescer.submit(item)

    assert asyncio.run(one(1)) == 10
    assert asyncio.run(one(2)) == 20
    assert flush.batches == [[1], [2]]


def test_with_a_linger_a_caller_alone_still_goes_out_at_once() -> None:
    async def scenario() -> None:
        flush = Recorder()
        coalescer = Coalescer(flush, linger=30, max_items=16)
        assert await asyncio.wait_for(coalescer.submit(1), timeout=5) == 10
        assert await asyncio.wait_for(coalescer.submit(2), timeout=5) == 20
        assert flush.batches == [[1], [2]]

    asyncio.run(scenario())


def test_while_items_come_faster_than_one_per_flush_the_next_waits_for_company() -> None:
    async def scenario() -> None:
        flush = Recorder()
        coalescer = Coalescer(flush, linger=1.0, max_items=16)
        assert await asyncio.gather(coalescer.submit(1), coalescer.submit(2)) == [10, 20]
        waiting = asyncio.ensure_future(coalescer.submit(3))
        await asyncio.sleep(0.05)
        assert flush.batches == [[1, 2]], "the item after a shared flush lingers"
        company = [asyncio.ensure_future(coalescer.submit(i)) for i in (4, 5)]
        assert await waiting == 30
        assert await asyncio.gather(*company) == [40, 50]
        assert flush.batches == [[1, 2], [3, 4, 5]]
        assert await asyncio.wait_for(coalescer.submit(6), timeout=5) == 60
        assert flush.batches[-1] == [6]
        # Well within the linger: a flush of one ended the lingering.
        assert await asyncio.wait_for(coalescer.submit(7), timeout=0.5) == 70

    asyncio.run(scenario())


def test_an_item_long_after_a_shared_flush_goes_out_at_once() -> None:
    async def scenario() -> None:
        flush = Recorder()
        coalescer = Coalescer(flush, linger=0.2, max_items=16)
        await asyncio.gather(coalescer.submit(1), coalescer.submit(2))
        await asyncio.sleep(0.5)
        # Well within the linger: the last shared flush is too long ago to say items come in fast.
        assert await asyncio.wait_for(coalescer.submit(3), timeout=0.1) == 30
        assert flush.batches == [[1, 2], [3]]

    asyncio.run(scenario())


def test_a_lingering_flush_goes_out_as_soon_as_it_is_full() -> None:
    async def scenario() -> None:
        flush = Recorder()
        coalescer = Coalescer(flush, linger=30, max_items=3)
        await asyncio.gather(coalescer.submit(1), coalescer.submit(2))
        full = asyncio.gather(*(coalescer.submit(i) for i in (3, 4, 5)))
        assert await asyncio.wait_for(full, timeout=5) == [30, 40, 50]
        assert flush.batches == [[1, 2], [3, 4, 5]]

    asyncio.run(scenario())
