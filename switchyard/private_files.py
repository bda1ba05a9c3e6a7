"""Files that hold secrets or data: private to their owner from the moment they exist.

A file created with a later chmod is world-readable in between; these are
created with their final mode instead (which the umask can only narrow).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

VAR_DIR = Path(__file__).resolve().parent.parent / "var"
# Written by the dev stack for its embedded Redis (devstack/embedded_redis.py);
# settings.py puts it into the default REDIS_URL.
REDIS_PASSWORD_FILE = VAR_DIR / "redis_password"


def _restrict(path: Path, mode: int) -> None:
    """Take group and other access away from an existing `path` of ours (var/ of an older checkout)."""
    status = path.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid():
        path.chmod(mode)


def private_dir(path: Path) -> None:
    """Make sure the directory `path` exists and is 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _restrict(path, 0o700)


def private_file(path: Path) -> None:
    """Make sure the file `path` exists (empty if new) and is 0600. Missing directories are created 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    _restrict(path, 0o600)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, 0600 whether the file is new or not."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def local_secret(path: Path) -> str:
    """A random secret kept in `path`, created on first use, so that it survives restarts."""
    private_dir(path.parent)
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.unlink(missing_ok=True)
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50))
        try:
            # Processes starting together: the first link wins and all read its secret.
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink()
    return path.read_text().strip()
