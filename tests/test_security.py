"""What protects the site and its local data: its Content-Security-Policy, file modes of secrets and databases.

tests/playground/test_csp_browser.py checks in Chromium that the pages work under the policy.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.template import Context, Template
from django.test import Client

from devstack import BASE_DIR
from routing.models import Route
from switchyard.private_files import local_secret, private_dir, private_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_local_secret_is_0600_from_its_creation_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secret_key"

    first = local_secret(path)

    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert len(first) >= 50
    assert local_secret(path) == first
    assert sorted(path.parent.iterdir()) == [path], "the draft it was written to is left behind"


def test_a_var_directory_left_open_by_an_older_checkout_is_made_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    var.chmod(0o755)

    private_dir(var)

    assert _mode(var) == 0o700


def test_a_new_sqlite_database_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    database = tmp_path / "data" / "new.sqlite3"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env={**env, "DATABASE_URL": f"sqlite:///{database}"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert _mode(database) == 0o600
    assert _mode(database.parent) == 0o700


def test_making_an_open_database_private_leaves_its_locks_alone(tmp_path: Path) -> None:
    """As each new connection of a worker's threads does, while other threads' connections hold locks."""
    database = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        private_file(database)

        # Another process (POSIX locks are per process) finds the write lock still held.
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sqlite3; sqlite3.connect({str(database)!r}, timeout=0).execute('BEGIN IMMEDIATE')",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "database is locked" in other.stderr
    finally:
        holder.close()


@pytest.mark.django_db(transaction=True)
def test_the_test_database_and_its_wal_files_are_0600() -> None:
    if settings.DATABASES["default"]["ENGINE"] != "switchyard.sqlite3":
        pytest.skip("the suite runs on PostgreSQL")
    get_user_model().objects.create_user(username="writer", password="a long enough password")
    name = Path(settings.DATABASES["default"]["NAME"])
    files = [name, name.with_name(name.name + "-wal"), name.with_name(name.name + "-shm")]

    assert all(path.exists() for path in files), "WAL mode keeps -wal and -shm files while connected"
    assert {path.name: _mode(path) for path in files} == {path.name: 0o600 for path in files}


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


@pytest.mark.django_db
@pytest.mark.usefixtures("redis_url")
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/accounts/login/",
        "/playground/",
        "/playground/leaderboard/",
        "/keys/",
        "/admin/",
        "/admin/routing/route/ROUTE/change/",
    ],
)
def test_every_page_sends_a_policy_that_runs_no_inline_script_without_its_nonce(
    admin_client: Client, path: str
) -> None:
    route = Route.objects.create(name="csp-check")

    response = admin_client.get(path.replace("ROUTE", str(route.pk)))

    assert response.status_code == 200
    policy = _policy(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    for directive in ("script-src", "style-src"):
        sources = policy[directive]
        assert "'self'" in sources
        assert not {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:"} & set(sources), sources
    assert policy["object-src"] == policy["base-uri"] == policy["frame-ancestors"] == ["'none'"]
    html = response.content.decode()
    # Handlers in attributes would need 'unsafe-inline' (or, for htmx's hx-on, eval).
    assert re.search(r"""\s(on[a-z]+|hx-on[:-][^=\s]*)=["']""", html) is None
    nonces = set(re.findall(r'<(?:script|style)\b[^>]*\snonce="([^"]+)"', html))
    for directive in ("script-src", "style-src"):
        allowed = {value[len("'nonce-") : -1] for value in policy[directive] if value.startswith("'nonce-")}
        assert nonces <= allowed, f"an inline element carries another nonce than {directive}'s"


def test_ready_made_html_gets_the_nonce_on_its_scripts_and_anything_else_is_escaped() -> None:
    template = Template("{% load csp_nonce %}{{ trusted|safe|with_nonce:nonce }} {{ untrusted|with_nonce:nonce }}")

    rendered = template.render(
        Context(
            {"trusted": "<div></div><script>draw()</script>", "untrusted": "<script>steal()</script>", "nonce": "n0"}
        )
    )

    assert rendered == '<div></div><script nonce="n0">draw()</script> &lt;script&gt;steal()&lt;/script&gt;'
