"""The worker's booking lane: work runs on a lane thread, results and errors come back, nesting does not deadlock."""

from __future__ import annotations

import threading

import pytest

from routing import db_lane


def test_work_runs_on_a_lane_thread_and_its_result_comes_back() -> None:
    assert db_lane.run(lambda: threading.current_thread().name).startswith("db-lane")


def test_an_error_of_the_work_is_raised_in_the_caller() -> None:
    def fail() -> None:
        raise LookupError("no such record")

    with pytest.raises(LookupError, match="no such record"):
        db_lane.run(fail)


def test_work_that_asks_the_lane_again_runs_in_place_instead_of_waiting_on_itself() -> None:
    def outer() -> tuple[str, str]:
        return threading.current_thread().name, db_lane.run(lambda: threading.current_thread().name)

    outer_thread, inner_thread = db_lane.run(outer)
    assert outer_thread == inner_thread
