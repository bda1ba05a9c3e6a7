from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """A real pooled client, as the workers use, for the adapters under test."""
    with httpx.Client() as client:
        yield client
