"""The events of one call on a Redis stream, from the worker to whoever relays them.

A stream (not pub/sub) because the reader often connects after the worker
has started: reading from 0-0 replays everything, and an entry id resumes
after a reconnect. Entry fields: `t` (type) and `d` (JSON data). Types:

    start  {model, provider, attempts}            a model is answering
    delta  {c}                                    answer text
    tool   {i, id, n, a}                          a piece of a tool call
    done   {model, provider, finish, usage, …}    the call ended well; last
    error  {kind, message, status, attempts, …}   the call failed; last
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from fastpath.resp import Command, checked
from routing.catalog import VERSION_KEY
from switchyard.redis_clients import get_resp, get_stream_hub

logger = logging.getLogger(__name__)

STREAM_TTL_SECONDS = 3600
STREAM_MAXLEN = 20000
# Below the client's socket timeout (switchyard/redis_clients.py).
STREAM_BLOCK_MS = 2000
TERMINAL = frozenset({"done", "error"})


def ended_stream_ttl() -> int:
    """Seconds a call's stream outlives its terminal event.

    Its readers have it all by then. What may still come is a redelivery of
    its task (the worker died before acknowledging it), within the broker's
    visibility timeout, which must find the run's output to tell it from a
    call never run. Kept for STREAM_TTL_SECONDS instead, an hour of a busy
    gateway's streams would sit in Redis (the bench's calls took ~4 KB each:
    some 4 GB at 300 calls/s).
    """
    return 2 * settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]


def stream_key(call_id: str) -> str:
    return f"sy:call:{call_id}"


def cancel_key(call_id: str) -> str:
    return f"sy:call:{call_id}:cancel"


def run_key(call_id: str) -> str:
    return f"sy:call:{call_id}:run"


class CallPublisher:
    """Writes one call's events (worker side, on the call loop, through the lean client).

    Answer text is coalesced (settings.STREAM_COALESCE_MS): the first text
    goes out at once, later text waits until the window since the oldest
    unsent piece has passed, until another event goes out (which sends the
    text first, so order holds), or until a timer sends it when the model
    pauses. Sends are queued in order on the loop's one connection, which
    Redis runs in order, and do not wait for Redis's replies: the relay goes
    on reading the model meanwhile (at 100 paced streams a reply took 3-7 ms
    to come back, and a terminal event waited behind a text send's reply up
    to 12 ms at p90). The terminal event waits for the replies of them all,
    and raises if one failed; an earlier failure is raised by the next send.
    """

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.key = stream_key(call_id)
        self.redis = get_resp()
        self.window = settings.STREAM_COALESCE_MS / 1000
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._expiry_set = False
        self._cancel_checked_at = self._loop.time()
        self._cancelled = False
        self._text: list[str] = []
        self._text_since = 0.0
        self._text_sent = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._unconfirmed: list[asyncio.Future[list[Any]]] = []

    async def publish(
        self, kind: str, data: dict[str, Any], *, after: Sequence[Command] = (), text: str = ""
    ) -> None:
        """Append an event, then `text` as answer text if given.

        `after` are commands to send before, in the same round trip.
        """
        async with self._lock:
            commands = list(after)
            self._queue_text(commands)
            self._queue(commands, kind, data)
            if text:
                self._queue(commands, "delta", {"c": text})
                self._text_sent = True
            await self._send(commands)
        if kind in TERMINAL:
            unconfirmed, self._unconfirmed = self._unconfirmed, []
            for replies in unconfirmed:
                checked(await replies)

    async def publish_text(self, text: str) -> None:
        now = self._loop.time()
        if not self._text:
            self._text_since = now
        self._text.append(text)
        if self._text_sent and now - self._text_since < self.window:
            if self._flush_timer is None:
                self._flush_timer = self._loop.call_at(self._text_since + self.window, self._flush_due)
            return
        self._text_sent = True
        await self._send_text()

    def _flush_due(self) -> None:
        self._flush_timer = None
        if self._text:
            task = self._loop.create_task(self._send_text())
            task.add_done_callback(self._log_flush_failure)

    def _log_flush_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("could not send the held text of call %s", self.call_id, exc_info=task.exception())

    async def _send_text(self) -> None:
        async with self._lock:
            commands: list[Command] = []
            self._queue_text(commands)
            await self._send(commands)

    async def _send(self, commands: list[Command]) -> None:
        """Queue `commands` (the lock is held); first raise the failure of an earlier send, if one failed."""
        pending = []
        for replies in self._unconfirmed:
            if replies.done():
                checked(replies.result())
            else:
                pending.append(replies)
        self._unconfirmed = pending
        if commands:
            self._unconfirmed.append(await self.redis.submit(commands))

    def _queue_text(self, commands: list[Command]) -> None:
        if self._text:
            self._queue(commands, "delta", {"c": "".join(self._text)})
            self._text.clear()
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None

    def _queue(self, commands: list[Command], kind: str, data: dict[str, Any]) -> None:
        payload = json.dumps(data, separators=(",", ":"))
        commands.append(("XADD", self.key, "MAXLEN", "~", STREAM_MAXLEN, "*", "t", kind, "d", payload))
        if kind in TERMINAL:
            commands.append(("EXPIRE", self.key, ended_stream_ttl()))
        elif not self._expiry_set:
            commands.append(("EXPIRE", self.key, STREAM_TTL_SECONDS))
            self._expiry_set = True

    async def cancelled(self, every: float = 0.2) -> bool:
        """Whether the client went away; asks Redis at most once per `every` seconds."""
        now = self._loop.time()
        if not self._cancelled and now - self._cancel_checked_at >= every:
            self._cancel_checked_at = now
            self._cancelled = bool(await self.redis.execute("EXISTS", cancel_key(self.call_id)))
        return self._cancelled

    async def claim_run(self) -> RunClaim:
        """Take the call's run lease, and read the registry's version, in one round trip."""
        claimed, length, version = await self.redis.pipeline(
            [
                ("SET", run_key(self.call_id), "1", "NX", "EX", settings.CALL_RUN_LEASE_SECONDS),
                ("XLEN", self.key),
                ("GET", VERSION_KEY),
            ]
        )
        return RunClaim(claimed is not None, length > 0, version)

    async def events_so_far(self) -> list[tuple[str, dict[str, Any]]]:
        """The (type, data) of every event published so far, by this run or an earlier one."""
        entries = await self.redis.execute("XRANGE", self.key, "-", "+")
        return [event_of(fields) for _, fields in entries]


def event_of(fields: list[bytes]) -> tuple[str, dict[str, Any]]:
    """(type, data) of a raw stream entry's flat [field, value, …] list."""
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return values[b"t"].decode(), json.loads(values[b"d"])


@dataclass(frozen=True, slots=True)
class RunClaim:
    """claimed is false while another live run holds the lease (a duplicate
    delivery); earlier_output is true when an earlier run already published
    events (it answered, or it ended); catalog_version is for get_catalog."""

    claimed: bool
    earlier_output: bool
    catalog_version: bytes | None


class LeaseKeeper:
    """Keeps the run leases of the loop's calls alive while they run.

    A lease outlives its worker by at most CALL_RUN_LEASE_SECONDS, so a task the
    broker redelivers after a crash can tell a dead run (lease gone) from a
    live one (lease held), whatever the call's length. One task on the call
    loop renews every lease in one round trip.
    """

    def __init__(self) -> None:
        self._calls: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def holding(self, call_id: str) -> AsyncIterator[None]:
        self._calls.add(call_id)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())
        try:
            yield
        finally:
            self._calls.discard(call_id)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CALL_RUN_LEASE_SECONDS / 3)
            calls = list(self._calls)
            if not calls:
                continue
            try:
                await get_resp().pipeline(
                    [("EXPIRE", run_key(call_id), settings.CALL_RUN_LEASE_SECONDS) for call_id in calls]
                )
            except redis.RedisError:
                logger.warning("could not renew %d run leases", len(calls))


lease_keeper = LeaseKeeper()


@dataclass(frozen=True, slots=True)
class CallEvent:
    entry_id: str
    kind: str
    data: dict[str, Any]


async def read_events(call_id: str, *, deadline: float, after: str = "0-0") -> AsyncIterator[list[CallEvent]]:
    """Yield the call's events in the batches they are read in, and [] on each quiet interval (for keepalives).

    A relay writes a batch to its client at once. Stops after a terminal
    event, or raises TimeoutError at `deadline` (monotonic).
    """
    async with get_stream_hub().follow(stream_key(call_id), after=after) as follower:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"call {call_id} produced no result in time")
            batch: list[CallEvent] = []
            for _, raw_id, fields in await follower.entries(timeout=min(STREAM_BLOCK_MS / 1000, remaining)):
                kind, data = event_of(fields)
                batch.append(CallEvent(raw_id.decode(), kind, data))
                if kind in TERMINAL:
                    yield batch
                    return
            yield batch


async def request_cancel(call_id: str) -> None:
    await get_resp().execute("SET", cancel_key(call_id), "1", "EX", STREAM_TTL_SECONDS)
