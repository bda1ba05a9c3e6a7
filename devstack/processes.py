"""Child processes, each the leader of its own process group, and the signals that stop them.

The terminal's Ctrl-C reaches the supervisor (and the short set-up commands
that share its group) only: the supervisor stops the long-lived children
itself, in order. Each group gets SIGTERM, then SIGKILL after a grace period.
POSIX only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

BASE_DIR = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


class StackError(Exception):
    """Something the user must fix; the message says what. The stack exits with status 1."""


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Child:
    """A long-lived child process, leader of its own process group, and how to start it again."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def exited(self) -> bool:
        """Whether it has exited, without reaping it.

        An unreaped (zombie) leader keeps its process group id reserved, so
        signalling the group cannot hit an unrelated process that reused it.
        """
        if self.process.returncode is not None:
            return True
        return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def signal_group(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def child_setup() -> None:
    """Runs in the child between fork and exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if sys.platform == "linux":
        # If the supervisor itself is killed (SIGKILL, OOM), its children get
        # SIGTERM instead of living on unsupervised.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Holds stop signals back so that none lands between fork and recording the child."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _start(name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=BASE_DIR,
        stdin=subprocess.DEVNULL,
        process_group=0,
        # What the children write themselves, such as Redis's append-only
        # file and log, is private to the user too.
        umask=0o077,
        preexec_fn=child_setup,
    )
    return Child(name, argv, env, process)


def spawn(name: str, argv: Sequence[str], env: dict[str, str], *, into: list[Child]) -> None:
    """Start a child in a new process group and append it to `into` before any stop signal can land."""
    with signals_deferred():
        into.append(_start(name, argv, env))


def respawn(child: Child, *, within: list[Child]) -> None:
    """Start an exited, reaped `child` again, as before, in its place in `within` (the order of stopping)."""
    with signals_deferred():
        within[within.index(child)] = _start(child.name, child.argv, child.env)


def stop(children: Sequence[Child], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM each child's group, SIGKILL what is left after `grace` seconds, then reap."""
    for child in children:
        if not child.exited():
            child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(child.exited() for child in children):
        time.sleep(0.05)
    for child in children:
        if not child.exited():
            print(f"devstack: {child.name} did not stop within {grace:g} s; killing it.", flush=True)
        # Also sweeps up anything the child left in its group.
        child.signal_group(signal.SIGKILL)
        child.process.wait()


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(*args: str, env: dict[str, str], capture: bool = False) -> str:
    """Run one manage.py command to completion in this process group (Ctrl-C reaches it too)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        cwd=BASE_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"`manage.py {' '.join(args)}` failed with status {result.returncode}.")
    return result.stdout or ""
