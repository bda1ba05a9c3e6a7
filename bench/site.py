"""The Switchyard a bench runs: its own SQLite database and its own Redis, as `make run` sets it up."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import devstack


def site_prepared(workdir: Path, redis_url: str) -> dict[str, str]:
    """The environment of the bench's processes, with the static files collected and the database migrated."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    # The pages link the collected static files (the readiness check loads the login page).
    devstack.manage("collectstatic", "--noinput", "-v", "0", env=env)
    devstack.manage("migrate", "--noinput", "-v", "0", env=env)
    return env


def site_started(env: dict[str, str], children: list[devstack.Child], *, concurrency: int) -> int:
    """Start the site's worker (`concurrency` threads) and web process, in that order, into `children`; its port."""
    web_port = devstack.free_port()
    devstack.spawn(
        "worker",
        [sys.executable, "-m", "celery", "-A", "switchyard", "worker", "--pool=threads",
         f"--concurrency={concurrency}", "--loglevel=WARNING", "--without-mingle", "--without-gossip"],
        env, into=children,
    )  # fmt: skip
    devstack.spawn(
        "web",
        [sys.executable, "-m", "switchyard.server", "--host", "127.0.0.1",
         "--port", str(web_port), "--no-access-log", "--log-level", "warning"],
        env, into=children,
    )  # fmt: skip
    devstack.wait_until_serving(f"http://127.0.0.1:{web_port}/accounts/login/", children)
    return web_port
