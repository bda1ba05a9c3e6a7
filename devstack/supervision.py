"""Watching the long-lived children once they are started."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NoReturn

import httpx

from devstack.processes import Child, StackError

READY_TIMEOUT_SECONDS = 60.0


def _first_death(children: Sequence[Child]) -> Child | None:
    return next((child for child in children if child.exited()), None)


def _died(child: Child) -> StackError:
    child.process.wait()
    return StackError(f"The {child.name} exited unexpectedly (status {child.process.returncode}); stopping the others.")


def wait_until_serving(url: str, children: Sequence[Child]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        dead = _first_death(children)
        if dead is not None:
            raise _died(dead)
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"The web server did not answer on {url} within {READY_TIMEOUT_SECONDS:g} s.")
        time.sleep(0.2)


def supervise(children: Sequence[Child]) -> NoReturn:
    """Block until a child dies (raises StackError) or a stop signal arrives (raises Interrupted)."""
    while True:
        dead = _first_death(children)
        if dead is not None:
            raise _died(dead)
        time.sleep(0.2)
