"""`python -m devstack run` and `python -m devstack test`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

import devstack
from devstack.embedded_redis import DEFAULT_REDIS_PORT, RedisFiles, redis_answers, start_redis
from devstack.processes import (
    BASE_DIR,
    GRACE_SECONDS,
    STOP_SIGNALS,
    Child,
    Interrupted,
    StackError,
    child_setup,
    free_port,
    manage,
    port_is_free,
    raise_interrupted,
    signals_deferred,
    spawn,
    stop,
)
from devstack.supervision import supervise, wait_until_serving


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
        signal.signal(signum, raise_interrupted)
    try:
        if not port_is_free(host, port):
            raise StackError(
                f"Port {port} on {host} is taken (is another `make run` still running?). Set PORT to a free port."
            )
        if env.get("REDIS_URL"):
            if not redis_answers(env["REDIS_URL"]):
                raise StackError("No Redis answers at REDIS_URL. Start it, or unset REDIS_URL to use the embedded one.")
        else:
            redis_port = int(env.get("SWITCHYARD_REDIS_PORT") or DEFAULT_REDIS_PORT)
            hint = "Set SWITCHYARD_REDIS_PORT to a free port, or REDIS_URL to use a Redis that is already running."
            env["REDIS_URL"] = start_redis(redis_port, port_hint=hint, into=infrastructure, persist=True)
        # Pages link the collected, content-hashed copies (switchyard/staticfiles.py).
        manage("collectstatic", "--noinput", env=env)
        manage("migrate", "--noinput", env=env)
        manage("load_demo", env=env)
        worker = [
            sys.executable, "-m", "celery", "-A", "switchyard", "worker",
            "--pool=threads",
            f"--concurrency={env.get('CELERY_CONCURRENCY') or 256}",
            "--loglevel=INFO",
        ]  # fmt: skip
        spawn("Celery worker", worker, env, into=services)
        # The minute's spend reconciliation (billing/tasks.py); its schedule file lives with the other local state.
        beat_schedule = BASE_DIR / "var" / "celerybeat-schedule"
        beat_schedule.parent.mkdir(exist_ok=True)
        beat = [
            sys.executable, "-m", "celery", "-A", "switchyard", "beat",
            "--loglevel=INFO", f"--schedule={beat_schedule}",
        ]  # fmt: skip
        spawn("Celery beat", beat, env, into=services)
        # uvicorn with the project's protocol, limits and shutdown (switchyard/server.py).
        web = [sys.executable, "-m", "switchyard.server", "--host", host, "--port", str(port)]
        spawn("web server (uvicorn)", web, env, into=services)
        wait_until_serving(f"{base_url}accounts/login/", services)
        admin_note = manage("ensure_admin", env=env, capture=True)
        print(banner(base_url, admin_note), flush=True)
        supervise(services, infrastructure)
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
    signal.signal(signal.SIGTERM, raise_interrupted)
    signal.signal(signal.SIGHUP, raise_interrupted)
    try:
        if not env.get("REDIS_URL"):
            redis_port = free_port()
            env["REDIS_URL"] = start_redis(redis_port, port_hint="Try again.", into=infrastructure)
        # What the pages and servestatic read, as under `make run`: the tests get the real thing.
        manage("collectstatic", "--noinput", env=env)
        with signals_deferred():
            pytest = subprocess.Popen(
                [sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=BASE_DIR, preexec_fn=child_setup
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
        # Every run gets a new port: keep var/redis/ from filling up with their files.
        if redis_port is not None:
            RedisFiles(redis_port).remove()


def main(argv: Sequence[str]) -> int:
    command, *rest = argv or ["help"]
    if command == "run" and not rest:
        return run()
    if command == "test":
        return test(rest[1:] if rest[:1] == ["--"] else rest)
    print(devstack.__doc__, file=sys.stderr)
    return 2
