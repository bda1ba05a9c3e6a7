"""The provider kinds' backends (tests/routing/providers/contract.py) as fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.routing.providers.contract import Backend, Upstreams, running_upstreams


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    with running_upstreams() as upstreams:
        yield upstreams


@pytest.fixture
def backend(request: pytest.FixtureRequest, upstreams: Upstreams) -> Backend:
    """The backend of the kind that the test is parametrized with (indirectly)."""
    kind: str = request.param
    return upstreams.backend(kind)


@pytest.fixture
def openai(upstreams: Upstreams) -> Backend:
    return upstreams.backend("openai")


@pytest.fixture
def anthropic(upstreams: Upstreams) -> Backend:
    return upstreams.backend("anthropic")


@pytest.fixture
def gemini(upstreams: Upstreams) -> Backend:
    return upstreams.backend("gemini")


@pytest.fixture
def ollama(upstreams: Upstreams) -> Backend:
    return upstreams.backend("ollama")
