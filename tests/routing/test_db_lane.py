"""The worker's booking lane: work runs on a lane thread, results and errors come back, the loop goes on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from routing.calls import db_lane, worker_loop


def test_work_runs_on_a_lane_thread_and_its_result_comes_back() -> None:
    assert worker_loop.run(db_lane.run(lambda: threading.current_thread().name)).startswith("db-lane")


def test_an_error_of_the_work_is_raised_in_the_caller() -> None:
    def fail() -> None:
        raise LookupError("no such record")

    with pytest.raises(LookupError, match="no such record"):
        worker_loop.run(db_lane.run(fail))


def test_the_loop_runs_other_work_while_the_lane_works() -> None:
    async def both() -> list[str]:
        done: list[str] = []

        async def slow() -> None:
            await db_lane.run(time.sleep, 0.3)
            done.append("lane")

        async def quick() -> None:
            await asyncio.sleep(0.01)
            done.append("loop")

        await asyncio.gather(slow(), quick())
        return done

    assert worker_loop.run(both()) == ["loop", "lane"]
