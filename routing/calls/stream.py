"""One call's event stream in Redis: the worker publishes its events, the web reads them.

A stream (not pub/sub) because the reader often connects after the worker
has started: reading from 0-0 replays everything, and an entry id resumes
after a reconnect. The events are routing/calls/events.py's.

Redis holds what a live call needs, not an archive. A stream lives an hour
while its call runs, and once its terminal event is out, until the call's
record is in the database (a worker that dies in between is recovered from
that event; once the record is in, a redelivery needs nothing from Redis).
The gateway, the only reader of an API call, says when it has read the end
(stream_read_to_end), the worker when the call is booked (booked): the
second of the two deletes the stream. A stream with no such reader (a
playground run, whose pages read ended columns from the database; a client
that went away) is left BOOKED_STREAM_TTL_SECONDS after the booking for
any live reader, which has read it all by then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from django.conf import settings

from fastpath.resp import Command, checked
from routing.calls.events import CallEvent, Text, decode, encode, is_terminal
from routing.calls.keys import cancel_key, released_key, stream_key
from switchyard.redis_clients import get_resp, get_stream_hub

logger = logging.getLogger(__name__)

STREAM_TTL_SECONDS = 3600
BOOKED_STREAM_TTL_SECONDS = 60
STREAM_MAXLEN = 20000
# Below the client's socket timeout (switchyard/redis_clients.py).
STREAM_BLOCK_MS = 2000


class CallPublisher:
    """Writes one call's events (worker side, on the call loop, through the lean client).

    Answer text is coalesced (settings.STREAM_COALESCE_MS): the first text
    goes out at once, later text waits until the window since the oldest
    unsent piece has passed, until another event goes out (which sends the
    text first, so order holds), or until a timer sends it when the model
    pauses. Sends are queued in order on the loop's one connection, which
    Redis runs in order, and do not wait for Redis's replies: the relay goes
    on reading the model meanwhile (under load a reply takes milliseconds to
    come back). The terminal event waits for the replies of them all,
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

    async def publish(self, event: CallEvent, *, text: str = "") -> None:
        """Append `event`, then `text` as answer text if given, in one round trip."""
        async with self._lock:
            commands: list[Command] = []
            self._queue_text(commands)
            self._queue(commands, event)
            if text:
                self._queue(commands, Text(text))
                self._text_sent = True
            await self._send(commands)
        if is_terminal(event):
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
            self._queue(commands, Text("".join(self._text)))
            self._text.clear()
            if self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None

    def _queue(self, commands: list[Command], event: CallEvent) -> None:
        commands.append(("XADD", self.key, "MAXLEN", "~", STREAM_MAXLEN, "*", *encode(event)))
        if is_terminal(event):
            # Kept until the call is booked (stream_booked), however long that takes.
            commands.append(("EXPIRE", self.key, STREAM_TTL_SECONDS))
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

    async def events_so_far(self) -> list[CallEvent]:
        """Every event published so far, by this run or an earlier one."""
        return [decode(fields) for _, fields in await self.redis.execute("XRANGE", self.key, "-", "+")]

    async def booked(self) -> None:
        """The call's record is in the database: its stream goes, now if its reader is done with it, else soon."""
        await self.redis.execute(*_release(self.call_id, booked=True))


async def read_events(call_id: str, *, deadline: float) -> AsyncGenerator[list[CallEvent], None]:
    """Yield the call's events in the batches they are read in, and [] on each quiet interval (for keepalives).

    A relay writes a batch to its client at once. Stops after a terminal
    event, or raises TimeoutError at `deadline` (monotonic).
    """
    async with get_stream_hub().follow(stream_key(call_id), after="0-0") as follower:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"call {call_id} produced no result in time")
            batch: list[CallEvent] = []
            for _, _, fields in await follower.entries(timeout=min(STREAM_BLOCK_MS / 1000, remaining)):
                event = decode(fields)
                batch.append(event)
                if is_terminal(event):
                    yield batch
                    return
            yield batch


# Each end of a call, its reader and its worker, says that it is done with
# the call's stream; the second deletes it. The first leaves its mark for
# BOOKED_STREAM_TTL_SECONDS, and the worker's booking gives the stream that
# long too (a reader that never says it is done, or none at all).
_RELEASE = """
redis.call('HSET', KEYS[2], ARGV[2], 1)
if redis.call('HLEN', KEYS[2]) >= 2 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('EXPIRE', KEYS[2], ARGV[1])
  if ARGV[2] == 'worker' then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
  end
end
return 0
"""


def _release(call_id: str, *, booked: bool) -> Command:
    # EVAL, not EVALSHA: Redis caches the script by its hash either way, and
    # EVALSHA would need a SCRIPT LOAD after every Redis restart.
    keys = (stream_key(call_id), released_key(call_id))
    return ("EVAL", _RELEASE, 2, *keys, BOOKED_STREAM_TTL_SECONDS, "worker" if booked else "reader")


async def stream_read_to_end(call_id: str) -> None:
    """The call's only reader has read its terminal event.

    Does not wait for Redis's reply: the reader's answer does not depend on it.
    """
    replies = await get_resp().submit([_release(call_id, booked=False)])
    replies.add_done_callback(_log_failed_release)


def _log_failed_release(replies: asyncio.Future[list[Any]]) -> None:
    if replies.cancelled():
        return
    error = replies.exception() or next((r for r in replies.result() if isinstance(r, Exception)), None)
    if error is not None:
        # The stream then expires with its TTL instead.
        logger.warning("could not release a read call stream: %s", error)


async def request_cancel(call_id: str) -> None:
    await get_resp().execute("SET", cancel_key(call_id), "1", "EX", STREAM_TTL_SECONDS)
