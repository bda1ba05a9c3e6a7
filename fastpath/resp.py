"""A lean asyncio Redis client for the per-call hot path of the web and worker processes.

redis.asyncio spends several times more CPU per command than the command
itself (pool checkout, retry and observability wrappers, response
callbacks), several times per call (fastpath/README.md). This client keeps
one connection per event loop, writes all the commands of one turn of the
event loop in one system call, and hands Redis's replies, which come in
order, to the futures waiting for them, so concurrent callers share round
trips. It
carries only what the hot path needs: plain commands and pipelines of them;
a blocking command (XREAD BLOCK) would hold up everyone on a shared
connection, so it gets a client of its own (fastpath/stream_hub.py). No
pub/sub, no transactions. Everything else uses redis-py
(switchyard/redis_clients.py). Errors are redis-py's exception classes, so
callers catch redis.RedisError either way.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.connection import parse_url

Command = Sequence[str | bytes | int | float]


class _Batch:
    """Commands sent together, and the one future of their replies (one future per command cost a gather each)."""

    __slots__ = ("count", "future", "replies", "sent_at")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, sent_at: float) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []
        self.sent_at = sent_at


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=redis.ResponseError)
        # In the order Redis answers.
        self.waiting: collections.deque[_Batch] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.last_reply = 0.0
        # Commands sent during one turn of the event loop, written together at its end.
        self.outgoing: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                batch = self.waiting[0]
                batch.replies.append(reply)
                if len(batch.replies) == batch.count:
                    self.waiting.popleft()
                    # A caller that was cancelled meanwhile no longer waits.
                    if not batch.future.done():
                        batch.future.set_result(batch.replies)
        except hiredis.ProtocolError as exc:
            self.abort(redis.InvalidResponse(f"Redis sent a malformed reply: {exc}"))
            return
        self.last_reply = asyncio.get_running_loop().time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or redis.ConnectionError(f"Connection to Redis lost: {exc or 'closed'}")
        while self.waiting:
            batch = self.waiting.popleft()
            if not batch.future.done():
                batch.future.set_exception(self.lost)

    def abort(self, reason: Exception) -> None:
        self.lost = reason
        if self.transport is not None:
            self.transport.abort()

    def send(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Queue `commands` (at least one); the future of their replies, in order."""
        assert self.transport is not None, "send before the connection is made"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self.waiting.append(_Batch(future, len(commands), loop.time()))
        if not self.outgoing:
            loop.call_soon(self._flush)
        # hiredis's stub types the argument as a 1-tuple; it takes a command of any length.
        self.outgoing.extend(hiredis.pack_command(tuple(command)) for command in commands)  # type: ignore[arg-type]
        return future

    def _flush(self) -> None:
        # A write is a system call, and on these machines one costs as much CPU
        # as the rest of a command: under load, many calls' commands share one.
        data = b"".join(self.outgoing)
        self.outgoing.clear()
        if self.lost is None and self.transport is not None:
            self.transport.write(data)


class RespClient:
    """One connection to the Redis at `url` (redis://, rediss:// or unix://), for one event loop."""

    def __init__(self, url: str, *, timeout: float, connect_timeout: float) -> None:
        self.params: dict[str, Any] = parse_url(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()
        self._watchdog: asyncio.TimerHandle | None = None

    async def execute(self, *command: str | bytes | int | float) -> Any:
        """Send one command; return its reply, or raise its error."""
        protocol = await self._connection()
        [reply] = await protocol.send([command])
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Send commands in one write; return their replies in order, or raise the first error among them."""
        if not commands:
            return []
        return checked(await (await self.submit(commands)))

    async def submit(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Queue commands behind every command queued before, without waiting for their replies.

        Redis runs a connection's commands in the order they were written, so
        a caller may queue more before the replies come. Returns the future of
        the replies, in order; `checked` raises the first error among them.
        """
        protocol = await self._connection()
        return protocol.send(commands)

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.abort(redis.ConnectionError("the client was closed"))
            self._protocol = None

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.lost is not None:
                self._protocol = await self._connect()
                self._arm_watchdog()
            return self._protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol: _Protocol | None = None
        setup = _setup_commands(self.params)
        try:
            async with asyncio.timeout(self.connect_timeout):
                if "path" in self.params:
                    transport, protocol = await loop.create_unix_connection(_Protocol, self.params["path"])
                else:
                    secure = self.params.get("connection_class") is redis.SSLConnection
                    tls = ssl.create_default_context() if secure else None
                    transport, protocol = await loop.create_connection(
                        _Protocol, self.params.get("host", "localhost"), self.params.get("port", 6379), ssl=tls
                    )
                # uvloop may return before it has called connection_made.
                protocol.transport = transport
                protocol.last_reply = loop.time()
                replies = await protocol.send(setup) if setup else []
        except BaseException as exc:
            if protocol is not None:
                protocol.abort(redis.ConnectionError("the connection was not set up"))
            if isinstance(exc, OSError | TimeoutError):
                raise redis.ConnectionError(f"Cannot connect to Redis: {exc}") from exc
            raise
        for command, reply in zip(setup, replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                error = redis.AuthenticationError(str(reply)) if command[0] == "AUTH" else reply
                protocol.abort(error)
                raise error
        return protocol

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self.timeout / 4, self._check_stalled)

    def _check_stalled(self) -> None:
        """Drop a connection whose oldest unanswered command has waited longer than the timeout."""
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            return
        if protocol.waiting:
            now = asyncio.get_running_loop().time()
            if now - max(protocol.waiting[0].sent_at, protocol.last_reply) > self.timeout:
                protocol.abort(redis.TimeoutError(f"Redis did not answer within {self.timeout:g}s"))
                return
        self._arm_watchdog()


def checked(replies: list[Any]) -> list[Any]:
    """`replies` as they are, unless one is an error: then raise the first."""
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def _setup_commands(params: dict[str, Any]) -> list[Command]:
    """AUTH and SELECT as the URL asks, sent first on each new connection."""
    setup: list[Command] = []
    if password := params.get("password"):
        username = params.get("username")
        setup.append(("AUTH", username, password) if username else ("AUTH", password))
    if db := params.get("db"):
        setup.append(("SELECT", db))
    return setup
