"""Keeping the long-lived children running: one that dies is started again, unless it keeps dying."""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Sequence
from typing import NoReturn

import httpx

from devstack.processes import Child, StackError, respawn

READY_TIMEOUT_SECONDS = 60.0
# More restarts of one child than this within the window is a crash loop:
# restarting it again would only fill the terminal with the same traceback.
RESTART_LIMIT = 5
RESTART_WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.2


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"status {returncode}, {signal.Signals(-returncode).name}"
        except ValueError:
            pass
    return f"status {returncode}"


def wait_until_serving(url: str, children: Sequence[Child]) -> None:
    """Until `url` answers. A child that dies meanwhile is a start-up failure: StackError, nothing restarted."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        dead = next((child for child in children if child.exited()), None)
        if dead is not None:
            status = describe_exit(dead.process.wait())
            raise StackError(f"The {dead.name} exited unexpectedly ({status}); stopping the others.")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"The web server did not answer on {url} within {READY_TIMEOUT_SECONDS:g} s.")
        time.sleep(0.2)


class RestartBudget:
    """At most `limit` restarts of a child (by name) within any `window` seconds."""

    def __init__(self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._restarts: dict[str, deque[float]] = {}

    def allow(self, name: str, now: float) -> bool:
        """Whether `name` may restart at `now`; if so, the restart is counted."""
        recent = self._restarts.setdefault(name, deque())
        while recent and now - recent[0] >= self.window:
            recent.popleft()
        if len(recent) >= self.limit:
            return False
        recent.append(now)
        return True


def _restart(child: Child, within: list[Child], budget: RestartBudget) -> None:
    # Also sweeps up what it left in its group (its leader is not reaped yet).
    child.signal_group(signal.SIGKILL)
    status = describe_exit(child.process.wait())
    if not budget.allow(child.name, time.monotonic()):
        raise StackError(
            f"The {child.name} exited ({status}), more than {budget.limit} times within "
            f"{budget.window:g} s: it keeps dying, so the stack stops. Its output above should say why."
        )
    print(f"devstack: the {child.name} exited ({status}); restarting it.", flush=True)
    respawn(child, within=within)


def supervise(*groups: list[Child]) -> NoReturn:
    """Restart each child that dies, forever; raises StackError on a crash loop, Interrupted on a stop signal."""
    budget = RestartBudget()
    while True:
        for children in groups:
            for child in list(children):
                if child.exited():
                    _restart(child, children, budget)
        time.sleep(POLL_SECONDS)
