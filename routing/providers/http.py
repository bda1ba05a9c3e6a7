"""The upstream HTTP client of the adapters: one pooled aiohttp session per event loop.

A worker runs all its calls' provider I/O on one event loop
(routing/calls/worker_loop.py). aiohttp is the client because, on that loop,
it cost several times less CPU per answer and per stream than httpx, in
threads or on a loop (BENCHMARKS.md, first round; requirements.txt says why
it is pinned). Nothing outside the adapters sees aiohttp.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import re
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator

import aiohttp

# Enough idle connections kept open for every call a worker runs at once:
# with fewer, 200 concurrent streams reconnected on most calls.
POOL_SIZE = 512
KEEPALIVE_SECONDS = 30

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()

# Server-sent events and NDJSON end lines with LF, CRLF or CR; str.splitlines
# would also split on characters that JSON strings may hold raw (U+2028).
_LINE_END = re.compile(r"\r\n|\r|\n")

TRANSPORT_ERRORS = (aiohttp.ClientError, OSError)


def upstream_session() -> aiohttp.ClientSession:
    """The running loop's session (a session cannot cross loops)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=KEEPALIVE_SECONDS),
            # trust_env would read the environment and ~/.netrc on every
            # request (a fifth of a call's CPU): proxies come from proxy_for.
            trust_env=False,
            raise_for_status=False,
        )
        _sessions[loop] = session
    return session


async def close_upstream_session() -> None:
    """Close the running loop's session, if it has one (before the loop itself closes)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


def proxy_for(url: str) -> str | None:
    """The proxy that HTTP_PROXY / HTTPS_PROXY / NO_PROXY give for `url` (as httpx honoured them)."""
    parts = urllib.parse.urlsplit(url)
    return _proxy_for(parts.scheme, parts.hostname or "")


@functools.lru_cache(maxsize=256)
def _proxy_for(scheme: str, host: str) -> str | None:
    # Read once per host: the environment does not change under a running worker.
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


def timeout(*, connect_seconds: float, read_seconds: float) -> aiohttp.ClientTimeout:
    """No overall limit (a stream may run long), but a bound on connecting and on each wait for bytes."""
    return aiohttp.ClientTimeout(total=None, connect=connect_seconds, sock_read=read_seconds)


async def aiter_lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines as text, without their line ends, as they arrive.

    A CR at the end of one chunk waits for the next, which may start with
    the LF of the same CRLF. A last line without a line end is yielded too.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in response.content.iter_any():
        text = pending + decoder.decode(chunk)
        held = ""
        if text.endswith("\r"):
            text, held = text[:-1], "\r"
        *lines, pending = _LINE_END.split(text)
        pending += held
        for line in lines:
            yield line
    pending += decoder.decode(b"", final=True)
    for line in _LINE_END.split(pending):
        if line:
            yield line
