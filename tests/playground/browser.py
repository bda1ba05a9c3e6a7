"""A real headless Chromium for the browser tests (Debian's `chromium`, driven by Playwright).

A test module calls `skip_without_chromium()` at its top and uses the
`browser` fixture (tests/playground/conftest.py). Without `chromium` the
module is skipped, and says so.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.test import Client

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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


@contextmanager
def signed_in_page(browser: Browser, base_url: str, user: Any, *, width: int = 1400) -> Iterator[Page]:
    """A page of `user`'s session at width×900 that fails the test on any script error or refused resource."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    yield page
    context.close()
    assert problems == []
