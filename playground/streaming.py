"""One SSE stream per run, multiplexing every column's call events for htmx.

A browser allows about six connections per origin, so a six-column run must
not open six EventSources: this follows all the calls' Redis streams through
the web process's stream hub (fastpath/stream_hub.py), which reads them
with the gateway's in one XREAD, and names each SSE event after its column:

    text-<n>     the answer so far, rendered as markdown (replaces the
                 column's body); sent at most every RENDER_SECONDS and more
                 seldom as the answer grows, since each render is of the
                 whole answer
    start-<n>    a model started answering (which one, for a route)
    final-<n>    the whole answer as rendered markdown (replaces the body)
    done-<n>     the column's figures, once its call succeeded
    error-<n>    the failure in words and the figures, once it failed or stopped
    summary      the run's total, once every column has ended
    done         last; the page closes the EventSource on it (sse-close)

Each event's SSE id lists every column's last Redis entry id, so a browser
that reconnects with Last-Event-ID resumes each column where it was. When
the last viewer of a run goes away before the end, every unfinished call is
cancelled, after CANCEL_GRACE_SECONDS: a reload or a reconnect within that
time keeps the run going.

The answer is rendered on the server while it streams, by the renderer that
draws the finished answer, so that markdown never shows raw (a half-open
code fence renders as an open code block) and the finished answer looks as
the streamed one did. A reconnecting browser gets the column's whole text
again: its Redis stream holds it, read once at the reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import redis
from django.conf import settings

from fastpath.stream_hub import Entry
from playground.render import render_markdown
from routing.calls.events import Started, Text, decode, is_terminal
from routing.calls.keys import stream_key
from routing.calls.spec import CallSpec
from routing.calls.stream import STREAM_BLOCK_MS, request_cancel
from routing.calls.watchdog import CallLost, CallWatch, call_give_up
from switchyard.redis_clients import get_resp, get_stream_hub

logger = logging.getLogger(__name__)

_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
CANCEL_GRACE_SECONDS = 3.0
# Browsers reconnect a dropped stream after this long (the default is about 3 s).
RETRY_MS = 1000
# A column's body is rendered again at most this often while it streams ...
RENDER_SECONDS = 0.1
# ... plus this long per character, so that rendering a long answer over and
# over (each render reads all of it) costs the web process a bounded share.
RENDER_SECONDS_PER_CHAR = 1e-5
# Delayed cancellations still pending; held so that they are not garbage collected.
_pending: set[asyncio.Task[None]] = set()


def viewers_key(run_id: str) -> str:
    return f"sy:playground:run:{run_id}:viewers"


@dataclass
class Column:
    position: int
    call_id: str
    # Ended according to the database when the stream opened.
    ended: bool = False
    last_id: str = "0-0"
    closed: bool = False
    # The answer so far, and whether the body shows all of it.
    text: list[str] = field(default_factory=list)
    chars: int = 0
    shown: bool = True
    rendered_at: float = 0.0

    def add(self, text: str) -> None:
        self.text.append(text)
        self.chars += len(text)
        self.shown = False

    def render_due(self, now: float) -> float:
        """When the body may next be rendered (time.monotonic())."""
        return self.rendered_at + RENDER_SECONDS + self.chars * RENDER_SECONDS_PER_CHAR


@dataclass(frozen=True)
class Ending:
    """The fragments of a column that has ended."""

    body_html: str
    foot_html: str
    failed: bool


@dataclass
class Fragments:
    """The HTML pieces a stream sends; each may read the database, so each is awaited."""

    ending: Callable[[int], Awaitable[Ending]]
    started: Callable[[int, Started], Awaitable[str]]
    timed_out: Callable[[int], Awaitable[str]]
    summary: Callable[[], Awaitable[str]]


def sse_event(event: str, data: str, event_id: str | None = None) -> bytes:
    """One SSE message. Every line of `data` gets its own data: field (CR and CRLF are line ends too)."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    text = data.replace("\r\n", "\n").replace("\r", "\n")
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def cursor_format(columns: list[Column]) -> str:
    return ",".join(f"{c.position}={c.last_id}" for c in columns)


def cursor_parse(value: str | None) -> dict[int, str]:
    """Last-Event-ID back to {position: last entry id}; anything malformed is ignored."""
    cursor: dict[int, str] = {}
    for part in (value or "").split(","):
        position, _, entry_id = part.partition("=")
        if position.isdigit() and _ENTRY_ID.fullmatch(entry_id):
            cursor[int(position)] = entry_id
    return cursor


async def _cancel_if_abandoned(run_id: str, call_ids: list[str], grace: float) -> None:
    await asyncio.sleep(grace)
    try:
        viewers = int(await get_resp().execute("GET", viewers_key(run_id)) or 0)
        if viewers <= 0:
            for call_id in call_ids:
                await request_cancel(call_id)
    except redis.RedisError:
        logger.warning("could not cancel the calls of abandoned run %s", run_id)


@dataclass
class RunRelay:
    run_id: str
    columns: list[Column]
    fragments: Fragments
    deadline: float
    cancel_grace: float = CANCEL_GRACE_SECONDS
    # The specs of the run's unfinished calls, rebuilt from the database, for a call whose task message was lost.
    respec: Callable[[], Awaitable[dict[int, CallSpec]]] | None = None
    # When the run's calls were pushed (time.monotonic()).
    pushed_at: float = field(default_factory=time.monotonic)
    finished: bool = False
    _by_key: dict[bytes, Column] = field(default_factory=dict)
    _watches: dict[int, CallWatch] | None = None

    def __post_init__(self) -> None:
        self._by_key = {stream_key(c.call_id).encode(): c for c in self.columns}

    def resume(self, cursor: dict[int, str]) -> None:
        for column in self.columns:
            if column.position in cursor:
                column.last_id = cursor[column.position]

    async def _reread(self) -> None:
        """The text a resumed column had before its cursor: its body is rendered whole again, at once."""
        for column in self.columns:
            if column.closed or column.last_id == "0-0":
                continue
            entries = await get_resp().execute("XRANGE", stream_key(column.call_id), "-", column.last_id)
            for _, fields in entries or ():
                event = decode(fields)
                if isinstance(event, Text):
                    column.add(event.text)

    def _id(self) -> str:
        return cursor_format(self.columns)

    async def events(self) -> AsyncIterator[bytes]:
        try:
            # Counted out in _leave, whichever way the stream ends.
            key = viewers_key(self.run_id)
            await get_resp().pipeline([("INCR", key), ("EXPIRE", key, 3600)])
            yield f"retry: {RETRY_MS}\n\n".encode()
            for column in self.columns:
                if column.ended:
                    async for chunk in self._close(column):
                        yield chunk
            if any(not c.closed for c in self.columns):
                await self._reread()
                async for chunk in self._follow():
                    yield chunk
            yield sse_event("summary", await self.fragments.summary(), self._id())
            yield sse_event("done", "done", self._id())
            self.finished = True
        finally:
            await self._leave()

    async def _follow(self) -> AsyncIterator[bytes]:
        """Relay the open columns' events until each has ended, or the run's deadline."""
        cursors = {stream_key(c.call_id): c.last_id for c in self.columns if not c.closed}
        async with get_stream_hub().follow_many(cursors) as follower:
            while open_columns := [c for c in self.columns if not c.closed]:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    async for chunk in self._time_out(open_columns):
                        yield chunk
                    return
                waits = [remaining, STREAM_BLOCK_MS / 1000]
                now = time.monotonic()
                waits.extend(max(c.render_due(now) - now, 0.0) for c in open_columns if not c.shown)
                entries = await follower.entries(timeout=min(waits))
                for key, column_entries in _by_stream(entries).items():
                    async for chunk in self._relay(self._by_key[key], column_entries):
                        yield chunk
                now = time.monotonic()
                due = [c for c in self.columns if not c.closed and not c.shown and c.render_due(now) <= now]
                for column in due:
                    yield self._text(column, now)
                if not entries and not due:
                    yield b": keepalive\n\n"
                    await self._watch_silent(open_columns)

    async def _watch_silent(self, columns: list[Column]) -> None:
        """Look for the open calls that show no sign of life: each is pushed again, or ended if it never ran.

        (routing/calls/watchdog.py) A call whose message was lost is pushed again, then given up: it publishes
        its terminal event, which closes its column. One whose run died mid-answer is pushed again, and the
        new run ends it; if none does, the column times out as any other.
        """
        if not columns or self.respec is None or time.monotonic() - self.pushed_at < settings.CALL_SIGN_OF_LIFE_SECONDS:
            return
        if self._watches is None:
            specs = await self.respec()
            self._watches = {position: CallWatch(spec, pushed_at=self.pushed_at) for position, spec in specs.items()}
        for column in columns:
            watch = self._watches.get(column.position)
            if watch is None:
                continue
            answering = column.last_id != "0-0"
            try:
                await watch.check(answering=answering)
            except CallLost:
                if not answering:
                    await call_give_up(watch.spec, waited_ms=int((time.monotonic() - watch.pushed_at) * 1000))

    async def _leave(self) -> None:
        try:
            await get_resp().execute("DECR", viewers_key(self.run_id))
        except redis.RedisError:
            logger.warning("could not count a viewer of run %s out", self.run_id)
        open_calls = [c.call_id for c in self.columns if not c.closed]
        if not self.finished and open_calls:
            task = asyncio.get_running_loop().create_task(
                _cancel_if_abandoned(self.run_id, open_calls, self.cancel_grace)
            )
            _pending.add(task)
            task.add_done_callback(_pending.discard)

    async def _relay(self, column: Column, entries: list[tuple[bytes, list[bytes]]]) -> AsyncIterator[bytes]:
        for entry_id, fields in entries:
            column.last_id = entry_id.decode()
            event = decode(fields)
            if isinstance(event, Text):
                column.add(event.text)
            elif isinstance(event, Started):
                started = await self.fragments.started(column.position, event)
                yield sse_event(f"start-{column.position}", started, self._id())
            elif is_terminal(event):
                # The ending renders the whole answer from the database.
                async for chunk in self._close(column):
                    yield chunk
                return

    def _text(self, column: Column, now: float) -> bytes:
        column.shown = True
        column.rendered_at = now
        text = "".join(column.text)
        column.text = [text]
        return sse_event(f"text-{column.position}", render_markdown(text), self._id())

    async def _close(self, column: Column) -> AsyncIterator[bytes]:
        column.closed = True
        ending = await self.fragments.ending(column.position)
        yield sse_event(f"final-{column.position}", ending.body_html, self._id())
        yield sse_event(f"{'error' if ending.failed else 'done'}-{column.position}", ending.foot_html, self._id())

    async def _time_out(self, columns: list[Column]) -> AsyncIterator[bytes]:
        for column in columns:
            await request_cancel(column.call_id)
            column.closed = True
            yield sse_event(f"error-{column.position}", await self.fragments.timed_out(column.position), self._id())


def _by_stream(entries: list[Entry]) -> dict[bytes, list[tuple[bytes, list[bytes]]]]:
    """Each stream's entries, in the order read."""
    grouped: dict[bytes, list[tuple[bytes, list[bytes]]]] = {}
    for key, entry_id, fields in entries:
        grouped.setdefault(key, []).append((entry_id, fields))
    return grouped
