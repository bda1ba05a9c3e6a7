"""Fake upstream providers: raw ASGI apps under a real uvicorn on 127.0.0.1.

Each protocol's fake (tests/fakes/<protocol>.py) subclasses FakeUpstream and
serves the recorded bytes of tests/fakes/wire/ (a byte-exact copy of
shared/provider-wire/). A test queues Replies to inject faults: any status
with any head and body, a slow first byte, a paced stream, a connection cut
after N bytes. Each RecordedRequest tells whether the client went away
before its reply was complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

WIRE_DIR = Path(__file__).parent / "wire"

Headers = list[tuple[bytes, bytes]]


def wire(name: str) -> bytes:
    """The exact bytes of one recorded file."""
    return (WIRE_DIR / name).read_bytes()


def with_counts(body: bytes, **counts: int) -> bytes:
    """`body` with the JSON number of each named key set to its new count, wherever the key occurs; spacing kept."""
    for name, count in counts.items():
        body, found = re.subn(rb'("' + name.encode() + rb'":\s*)\d+', rb"\g<1>" + str(count).encode(), body)
        assert found, f"{name} is not in the body"
    return body


def wire_head(name: str) -> tuple[int, Headers]:
    """Status and headers of a recorded `.headers` file (a raw HTTP response head)."""
    lines = wire(name).decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: Headers = []
    for line in lines[1:]:
        if not line:
            break
        key, _, value = line.partition(":")
        if key.lower() in ("content-length", "transfer-encoding", "connection"):
            # Framing is the server's business: the body served may differ in length.
            continue
        headers.append((key.strip().lower().encode(), value.strip().encode()))
    return status, headers


# The longest a held request waits for release(): a test that forgets to release still ends.
HOLD_SECONDS = 60


@dataclass
class Reply:
    """One scripted response.

    body is sent in pieces of `chunk_size` bytes (all at once when 0), the
    first after `first_byte_delay` seconds and the others `chunk_delay` apart.
    With `cut_after` set, the connection is dropped after that many body
    bytes, without finishing the response.
    """

    status: int = 200
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    first_byte_delay: float = 0.0
    chunk_size: int = 0
    chunk_delay: float = 0.0
    cut_after: int | None = None
    pieces: list[bytes] | None = None

    def chunks(self) -> list[bytes]:
        if self.pieces is not None:
            return self.pieces
        body = self.body if self.cut_after is None else self.body[: self.cut_after]
        if not self.chunk_size:
            return [body]
        return [body[i : i + self.chunk_size] for i in range(0, len(body), self.chunk_size)]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    # Set when the client closed the connection before the reply was complete.
    client_left: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


class ConnectionCut(Exception):
    """Raised inside the ASGI app to make uvicorn drop the connection mid-response."""


class FakeUpstream:
    """An ASGI app that records requests and answers from a queue of Replies.

    Subclasses implement default_reply(request) with the protocol's happy path.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        """Keep every request from now on waiting (up to HOLD_SECONDS) before its reply, until release()."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
        self._open.set()

    def default_reply(self, request: RecordedRequest) -> Reply:
        raise LookupError(f"no reply for {request.method} {request.path}")

    def next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        return self.default_reply(request)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode(),
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
        )
        reply = self.next_reply(request)
        deadline = time.monotonic() + HOLD_SECONDS
        while not self._open.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left = asyncio.Event()
        watcher = asyncio.create_task(_watch_for_departure(receive, request, left))
        try:
            if reply.first_byte_delay:
                await _pause(reply.first_byte_delay, left)
            await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
            for i, chunk in enumerate(reply.chunks()):
                if i and reply.chunk_delay:
                    await _pause(reply.chunk_delay, left)
                if left.is_set():
                    # Nobody reads the rest: stop, rather than keep the server busy until it is sent.
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if reply.cut_after is not None:
                raise ConnectionCut
        finally:
            # Before the last message: once the reply is complete, receive() reports a disconnect too.
            watcher.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_for_departure(receive: Any, request: RecordedRequest, left: asyncio.Event) -> None:
    """Mark `request` as left when the client disconnects before its reply is complete."""
    while (await receive())["type"] != "http.disconnect":
        pass
    request.client_left.set()
    left.set()


async def _pause(seconds: float, left: asyncio.Event) -> None:
    """Sleep `seconds`, or less if the client leaves meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(left.wait(), seconds)


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its handlers
        pass


@contextlib.contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Run `app` under uvicorn on a free 127.0.0.1 port in a thread; yield its base URL.

    `options` go to uvicorn.Config, over the defaults.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, **({"lifespan": "off", "log_level": "critical", "access_log": False} | options))
    server = _ThreadedServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake upstream did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
