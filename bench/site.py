"""The Switchyard a bench runs: its own SQLite database and its own Redis, as `make run` sets it up."""

from __future__ import annotations

import os
import secrets
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
