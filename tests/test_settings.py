"""Settings come from the environment only: checked in fresh processes, as a deployment would load them."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from devstack import BASE_DIR
from switchyard.private_files import REDIS_PASSWORD_FILE

PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(64),
    "SWITCHYARD_ENCRYPTION_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "switchyard.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://switchyard.example.com",
    "HTTPS": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "BEHIND_PROXY": "true",
}


def _manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    unset = ("DEBUG", "HTTPS", "SECRET_KEY", "DATABASE_URL", "REDIS_URL")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**clean, "DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_deployment_checklist_passes_with_production_variables(tmp_path: Path) -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_debug_is_off_unless_asked_for(tmp_path: Path) -> None:
    show = "from django.conf import settings; print(settings.DEBUG)"

    default = _manage("shell", "--verbosity=0", "-c", show, env=PRODUCTION, tmp_path=tmp_path)
    asked = _manage("shell", "--verbosity=0", "-c", show, env={"DEBUG": "true"}, tmp_path=tmp_path)

    assert default.stdout.split() == ["False"], default.stderr
    assert asked.stdout.split() == ["True"], asked.stderr


def test_cookies_are_secure_over_https_whether_debug_is_on_or_not(tmp_path: Path) -> None:
    show = "from django.conf import settings; print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)"

    def secure(**env: str) -> list[str]:
        result = _manage("shell", "--verbosity=0", "-c", show, env=env, tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert secure(HTTPS="true") == ["True", "True"]
    assert secure(HTTPS="true", DEBUG="true") == ["True", "True"]
    assert secure(DEBUG="true") == ["False", "False"]
    assert secure() == ["False", "False"]


def test_without_redis_url_manage_py_finds_the_embedded_redis_with_its_password(tmp_path: Path) -> None:
    """As manage.py run by hand beside `make run` does; the suite's own Redis has made the password file."""
    show = (
        "from urllib.parse import urlsplit; from django.conf import settings; "
        "from switchyard.private_files import REDIS_PASSWORD_FILE; url = urlsplit(settings.REDIS_URL); "
        "print(url.hostname, url.port, url.password == REDIS_PASSWORD_FILE.read_text().strip())"
    )

    result = _manage("shell", "--verbosity=0", "-c", show, env={"SWITCHYARD_REDIS_PORT": "6399"}, tmp_path=tmp_path)

    assert REDIS_PASSWORD_FILE.exists()
    assert result.stdout.split() == ["127.0.0.1", "6399", "True"], result.stderr
