"""`make run` and `make test` for real: the dev stack in a subprocess, stopped as a user would."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import plotly as plotly_package
import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.templatetags.static import static

from devstack import BASE_DIR, Child, RedisFiles, free_port, port_is_free, start_redis, stop
from devstack.supervision import RESTART_LIMIT, RestartBudget
from switchyard.private_files import REDIS_PASSWORD_FILE

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="finds left-over processes through /proc")

MARKER_VAR = "SWITCHYARD_DEVSTACK_TEST_MARKER"
STARTUP_TIMEOUT = 45.0
STOP_TIMEOUT = 20.0


def _pids_with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries `marker`: everything the stack started inherits it."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    log: Path
    base_url: str
    web_port: int
    redis_port: int
    database: Path
    marker: str
    env: dict[str, str]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (match := re.search(pattern, self.output())) is None:
            assert self.process.poll() is None, f"the dev stack exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in the output:\n{self.output()}"
            time.sleep(0.1)
        return match


def _start_stack(tmp_path: Path, **overrides: str) -> tuple[subprocess.Popen[bytes], Path, dict[str, str]]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "SWITCHYARD_REDIS_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'devstack.sqlite3'}",
        "CELERY_CONCURRENCY": "4",
        MARKER_VAR: uuid.uuid4().hex,
        **overrides,
    }
    # The stack under test starts its own embedded Redis, not the suite's.
    env.pop("REDIS_URL", None)
    log = tmp_path / "devstack.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Its own process group, as under a terminal; SIGINT to the group is Ctrl-C.
            start_new_session=True,
        )
    return process, log, env


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    process, log, env = _start_stack(tmp_path)
    running = Stack(
        process=process,
        log=log,
        base_url=f"http://127.0.0.1:{env['PORT']}",
        web_port=int(env["PORT"]),
        redis_port=int(env["SWITCHYARD_REDIS_PORT"]),
        database=tmp_path / "devstack.sqlite3",
        marker=env[MARKER_VAR],
        env=env,
    )
    try:
        yield running
    finally:
        # Only after a failed test is anything left: kill what this test started.
        if process.poll() is None:
            # Its children first, each leading a group of its own; the embedded
            # Redis carries no marker (its title overwrites its environment).
            for child in _children_of(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in _pids_with_marker(running.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        RedisFiles(running.redis_port).remove()


def _wait_until_serving(stack: Stack, client: httpx.Client) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        assert stack.process.poll() is None, f"the dev stack exited early:\n{stack.output()}"
        try:
            if client.get("/accounts/login/").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the web server never answered:\n{stack.output()}"
        time.sleep(0.2)


def _usable_model_ids(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT m.public_id FROM routing_languagemodel m JOIN routing_provider p ON p.id = m.provider_id "
            "WHERE m.enabled AND p.enabled"
        ).fetchall()
    return [public_id for (public_id,) in rows]


@linux_only
def test_it_serves_the_site_and_stops_everything_on_ctrl_c(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        _wait_until_serving(stack, client)

        # The stack collected the static files as this suite did: the same content, the same names.
        htmx = client.get(static("vendor/htmx-2.0.11.min.js"))
        assert htmx.status_code == 200
        assert (
            hashlib.sha256(htmx.content).digest()
            == hashlib.sha256((BASE_DIR / "static/vendor/htmx-2.0.11.min.js").read_bytes()).digest()
        )
        plotly = client.get(static("plotly/plotly.min.js"), headers={"Accept-Encoding": "gzip"})
        assert plotly.status_code == 200
        assert plotly.headers["content-encoding"] == "gzip"
        assert "immutable" in plotly.headers["cache-control"]
        assert plotly.num_bytes_downloaded < 1_600_000
        assert plotly.content == (Path(plotly_package.__file__).parent / "package_data/plotly.min.js").read_bytes()

        password = stack.wait_for_output(r"password: (\S+)").group(1)
        stack.wait_for_output(r"Ctrl-C stops everything")
        login_page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text)
        assert token is not None
        logged_in = client.post(
            "/accounts/login/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": token.group(1)},
        )
        assert logged_in.status_code == 302, logged_in.text
        assert logged_in.headers["location"] == "/"

        home = client.get("/")
        assert home.status_code == 200
        models = _usable_model_ids(stack.database)
        assert models, "load_demo configured no usable model"
        for public_id in models:
            assert public_id in home.text

    _stopped_cleanly_on_ctrl_c(stack)


def _children_of(parent: int) -> list[int]:
    """Live child processes of `parent`. (Redis writes its title over its environment: no marker there.)"""
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry.name))
    return pids


# Command lines are NUL-separated: this matches the Celery worker, not Celery beat.
WORKER = b"switchyard\x00worker"
BEAT = b"switchyard\x00beat"


def _only_pid(stack: Stack, program: bytes, *, other_than: int = 0) -> int:
    """The pid of the one live child of the stack whose command line names `program`, once there is one."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        pids = []
        for pid in _children_of(stack.process.pid):
            with contextlib.suppress(OSError):
                if program in Path(f"/proc/{pid}/cmdline").read_bytes() and pid != other_than:
                    pids.append(pid)
        if len(pids) == 1:
            return pids[0]
        assert stack.process.poll() is None, f"the dev stack exited:\n{stack.output()}"
        assert time.monotonic() < deadline, f"no single {program!r} process: {pids}\n{stack.output()}"
        time.sleep(0.1)


def _api_key(stack: Stack) -> str:
    created = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "supervised"],
        cwd=BASE_DIR,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _chat_completes(stack: Stack, key: str) -> str:
    """The answer of one /v1 call through the simulated provider, retried while Redis or the worker come back."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(base_url=stack.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        while True:
            try:
                reply = client.post(
                    "/v1/chat/completions",
                    json={"model": "sim/swift-mini", "messages": [{"role": "user", "content": "Still there?"}]},
                )
                if reply.status_code == 200:
                    return str(reply.json()["choices"][0]["message"]["content"])
                outcome = f"{reply.status_code} {reply.text[:300]}"
            except httpx.TransportError as error:
                outcome = repr(error)
            assert time.monotonic() < deadline, f"no answer: {outcome}\n{stack.output()}"
            time.sleep(0.5)


def _stopped_cleanly_on_ctrl_c(stack: Stack) -> None:
    os.killpg(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(timeout=STOP_TIMEOUT) == 0, stack.output()
    deadline = time.monotonic() + 5
    while _group_alive(stack.process.pid) or _pids_with_marker(stack.marker):
        assert time.monotonic() < deadline, f"left behind: {_pids_with_marker(stack.marker)}\n{stack.output()}"
        time.sleep(0.05)
    assert port_is_free("127.0.0.1", stack.web_port)
    assert port_is_free("127.0.0.1", stack.redis_port)
    assert "devstack: stopped." in stack.output()


@linux_only
def test_a_worker_or_redis_that_dies_is_restarted_and_calls_go_on(stack: Stack) -> None:
    stack.wait_for_output(r"Ctrl-C stops everything")
    key = _api_key(stack)
    assert _chat_completes(stack, key)
    web = _only_pid(stack, b"switchyard.server")
    worker = _only_pid(stack, WORKER)
    assert _only_pid(stack, BEAT), "no Celery beat: the spend reconciliation would never run"

    os.killpg(worker, signal.SIGKILL)

    stack.wait_for_output(r"devstack: the Celery worker exited \(status -9, SIGKILL\); restarting it\.")
    assert _only_pid(stack, WORKER, other_than=worker)
    assert _chat_completes(stack, key)

    redis_server = _only_pid(stack, b"redis-server")
    os.killpg(redis_server, signal.SIGKILL)

    stack.wait_for_output(r"devstack: the embedded Redis exited \(status -9, SIGKILL\); restarting it\.")
    assert _only_pid(stack, b"redis-server", other_than=redis_server)
    assert _chat_completes(stack, key)
    assert _only_pid(stack, b"switchyard.server") == web, "the web server was restarted too"
    _stopped_cleanly_on_ctrl_c(stack)


@linux_only
def test_a_worker_that_keeps_dying_stops_the_stack_with_a_message(stack: Stack) -> None:
    stack.wait_for_output(r"Ctrl-C stops everything")
    worker = 0
    for _ in range(RESTART_LIMIT + 1):
        worker = _only_pid(stack, WORKER, other_than=worker)
        os.killpg(worker, signal.SIGKILL)

    assert stack.process.wait(timeout=STOP_TIMEOUT) == 1, stack.output()
    assert stack.output().count("devstack: the Celery worker exited (status -9, SIGKILL); restarting it.") == 5
    assert (
        f"The Celery worker exited (status -9, SIGKILL), more than {RESTART_LIMIT} times within 60 s: "
        "it keeps dying, so the stack stops." in stack.output()
    )
    deadline = time.monotonic() + 5
    while _pids_with_marker(stack.marker):
        assert time.monotonic() < deadline, f"left behind: {_pids_with_marker(stack.marker)}\n{stack.output()}"
        time.sleep(0.05)
    assert port_is_free("127.0.0.1", stack.web_port)
    assert port_is_free("127.0.0.1", stack.redis_port)


def test_the_restart_budget_allows_five_restarts_within_a_minute() -> None:
    budget = RestartBudget()

    assert [budget.allow("worker", now) for now in (0, 10, 20, 30, 40)] == [True] * 5
    assert not budget.allow("worker", 59.9)
    assert budget.allow("web", 59.9), "each child has its own budget"
    assert budget.allow("worker", 60.0), "the restart at 0 s is a minute old"
    assert not budget.allow("worker", 60.5)


@pytest.fixture
def redis_children() -> Iterator[list[Child]]:
    children: list[Child] = []
    try:
        yield children
    finally:
        stop(children)


def test_the_embedded_redis_refuses_a_client_without_the_password(tmp_path: Path, redis_children: list[Child]) -> None:
    url = start_redis(free_port(), port_hint="", into=redis_children, directory=tmp_path)
    password = REDIS_PASSWORD_FILE.read_text().strip()
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    with socket.create_connection(("127.0.0.1", port), timeout=5) as anonymous:
        anonymous.sendall(b"PING\r\n")
        assert anonymous.recv(100).startswith(b"-NOAUTH")
    assert redis.Redis.from_url(url).ping()
    assert url == f"redis://:{password}@127.0.0.1:{port}/0"
    # Not on its command line, where ps shows it to every user, but in its configuration file.
    (server,) = redis_children
    assert password.encode() not in Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
    assert stat.S_IMODE(RedisFiles(port, tmp_path).config.stat().st_mode) == 0o600
    assert stat.S_IMODE(REDIS_PASSWORD_FILE.stat().st_mode) == 0o600


def test_what_the_embedded_redis_holds_survives_its_restart(tmp_path: Path, redis_children: list[Child]) -> None:
    port = free_port()
    url = start_redis(port, port_hint="", into=redis_children, directory=tmp_path, persist=True)
    redis.Redis.from_url(url).rpush("queued", "a task message", "another")

    stop(redis_children)  # SIGTERM, as Ctrl-C on `make run` does
    redis_children.clear()
    again = start_redis(port, port_hint="", into=redis_children, directory=tmp_path, persist=True)

    assert redis.Redis.from_url(again).lrange("queued", 0, -1) == [b"a task message", b"another"]
    files = RedisFiles(port, tmp_path)
    assert stat.S_IMODE(files.append_only.stat().st_mode) == stat.S_IMODE(files.log.stat().st_mode) == 0o600


def test_it_names_the_variable_to_change_when_the_redis_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, log, _ = _start_stack(tmp_path, SWITCHYARD_REDIS_PORT=str(port))

        assert process.wait(timeout=STOP_TIMEOUT) == 1
    output = log.read_text()
    assert f"Port {port} on 127.0.0.1 is taken" in output
    assert "SWITCHYARD_REDIS_PORT" in output and "REDIS_URL" in output


def test_it_names_the_variable_to_change_when_the_web_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, log, _ = _start_stack(tmp_path, PORT=str(port))

        assert process.wait(timeout=STOP_TIMEOUT) == 1
    assert "Set PORT to a free port" in log.read_text()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param("def test_it_fails():\n    assert False\n", 1, id="failing"),
        pytest.param("def test_it_passes():\n    pass\n", 0, id="passing"),
        pytest.param("", 5, id="empty"),
    ],
)
def test_the_test_command_passes_pytests_status_through_and_stops_its_redis(
    tmp_path: Path, body: str, status: int
) -> None:
    seen = tmp_path / "redis_url.txt"
    (tmp_path / "test_inner.py").write_text(
        "import os\nimport redis\n\n"
        f"assert redis.Redis.from_url(os.environ['REDIS_URL']).ping()\n"
        f"open({str(seen)!r}, 'w').write(os.environ['REDIS_URL'])\n\n" + body
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}

    result = subprocess.run(
        [sys.executable, "-m", "devstack", "test", "--", "-q", "-p", "no:django", str(tmp_path)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == status, result.stdout + result.stderr
    redis_port = int(seen.read_text().rsplit(":", 1)[1].split("/")[0])
    assert port_is_free("127.0.0.1", redis_port)


@pytest.mark.django_db
def test_ensure_admin_creates_the_first_superuser_once_and_prints_its_password() -> None:
    first, second = io.StringIO(), io.StringIO()

    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)

    password = re.search(r"password: (\S+)", first.getvalue())
    assert password is not None
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(password.group(1))
    assert password.group(1) not in second.getvalue()
    assert re.search(r"^password:", second.getvalue(), re.MULTILINE) is None
    assert get_user_model().objects.count() == 1


@pytest.mark.django_db
def test_ensure_admin_leaves_an_existing_superuser_alone() -> None:
    get_user_model().objects.create_superuser(username="root", email="", password="correct horse battery")
    out = io.StringIO()

    call_command("ensure_admin", stdout=out)

    assert not get_user_model().objects.filter(username="admin").exists()
    assert "existing superuser" in out.getvalue()
