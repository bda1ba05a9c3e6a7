"""A real headless Chromium for the browser tests (Debian's `chromium`, driven by Playwright).

A test module calls `skip_without_chromium()` at its top and uses the
`browser` fixture (tests/playground/conftest.py). Without `chromium` the
module is skipped, and says so.
"""

from __future__ import annotations

import shutil
import warnings

import pytest

CHROMIUM = shutil.which("chromium")
PASSWORD = "correct horse battery staple"


def skip_without_chromium() -> None:
    if CHROMIUM is None:
        reason = (
            "BROWSER TESTS SKIPPED: Debian's `chromium` is not installed. Run `make test` as root "
            "(it installs it with apt-get) or `apt-get install -y chromium`."
        )
        warnings.warn(reason, stacklevel=2)
        pytest.skip(reason, allow_module_level=True)
