"""Files that hold secrets or data: private to their owner from the moment they exist.

A file created with a later chmod is world-readable in between; these are
created with their final mode instead (which the umask can only narrow).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
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


def _create(path: Path, text: str) -> None:
    """Create `path` holding `text`, 0600, unless it exists, without ever opening `path` itself.

    The file is written under another name and linked into place: readers
    never see it half-written, and of processes racing to create it the
    first wins. Nor is a descriptor of `path` ever closed here: that would
    drop the locks that this process's SQLite connections hold on it.
    """
    descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        os.unlink(draft)


def private_file(path: Path) -> None:
    """Make sure the file `path` exists (empty if new) and is 0600. Missing directories are created 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        _create(path, "")
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
        _create(path, secrets.token_urlsafe(50))
    return path.read_text().strip()
