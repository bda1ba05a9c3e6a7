"""One blocking XREAD for all the Redis streams that an event loop follows.

The web process relays each call's events from its stream: the gateway one
call per response, the playground all the columns of a run in one. With a
blocking XREAD per relay, on a connection of its own, every event cost a
command, a write and a read on that connection. A hub reads every followed
stream in one XREAD on one connection, and hands each stream's entries to
its followers (what it saves: fastpath/README.md).

A stream followed while that XREAD blocks must join it. Every read also
includes the hub's wake stream, and following adds an entry to it (on the
loop's shared connection, with whatever else that turn of the loop sends):
the read returns at once, or does not block at all if Redis takes the wake
first, and the next read includes the newcomer. Each read resumes each
stream from its furthest-behind follower's last entry; a follower takes only
the entries after its own, and one that joined further back than the read
under way waits for the next, so nothing is missed or read twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis

from fastpath.resp import RespClient, checked

logger = logging.getLogger(__name__)

# A read returns after this long without entries, so that a hub with no
# followers left ends; below the client's socket timeout.
READ_BLOCK_MS = 2000
WAKE_TTL_SECONDS = 3600


# (stream key, entry id, [field, value, …]), as XREAD gives them.
Entry = tuple[bytes, bytes, list[bytes]]


class Follower:
    """The entries of the streams one reader follows, as the hub reads them."""

    def __init__(self, cursors: dict[str, str]) -> None:
        # Each stream's last entry id taken: the next entries come after it.
        self.last = {key.encode(): after.encode() for key, after in cursors.items()}
        self._entries: collections.deque[Entry] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    async def entries(self, timeout: float) -> list[Entry]:
        """The entries read since the last call, in the order read; [] if none came within `timeout`.

        A failed read is raised once the entries read before it are taken.
        """
        if not self._entries and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                return []
            finally:
                self._waiter = None
        if not self._entries and self._error is not None:
            raise self._error
        entries = list(self._entries)
        self._entries.clear()
        return entries

    def _deliver(self, key: bytes, entries: list[tuple[bytes, list[bytes]]], resumed_at: bytes) -> None:
        """Take the entries of `key` that a read resuming after `resumed_at` brought, and that come after ours."""
        last = self.last[key]
        if resumed_at != last:
            if _order(resumed_at) > _order(last):
                # Joined during the read, further back than it started: the next read starts from here.
                return
            entries = [(entry_id, fields) for entry_id, fields in entries if _order(entry_id) > _order(last)]
        new = [(key, entry_id, fields) for entry_id, fields in entries]
        if new:
            self.last[key] = new[-1][1]
            self._entries.extend(new)
            self._wake()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _furthest_behind(followers: list[Follower], key: bytes) -> bytes:
    return min((f.last[key] for f in followers), key=_order)


def _order(entry_id: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition(b"-")
    return int(milliseconds), int(sequence or 0)


class StreamHub:
    """The followed streams of one event loop, read by one task on one connection of its own."""

    def __init__(self, reader: RespClient, waker: RespClient) -> None:
        self._reader = reader
        self._waker = waker
        # A stream may have several followers (two pages showing the same run).
        self._followers: dict[bytes, list[Follower]] = {}
        self._wake_key = f"sy:hub:{uuid.uuid4().hex}"
        self._wake_last = b"0-0"
        self._reading: asyncio.Task[None] | None = None
        self._woken = False

    def follow(self, key: str, *, after: str = "0-0") -> contextlib.AbstractAsyncContextManager[Follower]:
        """Follow the stream at `key` from the entry after `after` while the context lasts."""
        return self.follow_many({key: after})

    @contextlib.asynccontextmanager
    async def follow_many(self, cursors: dict[str, str]) -> AsyncIterator[Follower]:
        """Follow each stream of `cursors` (key: the entry id to start after) with one follower."""
        follower = Follower(cursors)
        for key in follower.last:
            self._followers.setdefault(key, []).append(follower)
        try:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.get_running_loop().create_task(self._read_forever())
            else:
                await self._wake()
            yield follower
        finally:
            for key in follower.last:
                followers = self._followers.get(key, [])
                if follower in followers:
                    followers.remove(follower)
                if not followers:
                    self._followers.pop(key, None)

    async def _wake(self) -> None:
        """Make the read under way return, once per read: the next one includes the new followers."""
        if self._woken:
            return
        self._woken = True
        replies = await self._waker.submit(
            [("XADD", self._wake_key, "MAXLEN", 1, "*", "w", 1), ("EXPIRE", self._wake_key, WAKE_TTL_SECONDS)]
        )
        replies.add_done_callback(_log_failed_wake)

    async def _read_forever(self) -> None:
        while self._followers:
            keys = [self._wake_key.encode()]
            ids = [self._wake_last]
            # Each stream resumes at the last entry of its follower furthest behind (built at every
            # read, for every followed stream: the common case, one follower, costs least).
            for key, followers in self._followers.items():
                keys.append(key)
                ids.append(followers[0].last[key] if len(followers) == 1 else _furthest_behind(followers, key))
            self._woken = False
            try:
                reply = await self._reader.execute(
                    "XREAD", "COUNT", 512, "BLOCK", READ_BLOCK_MS, "STREAMS", *keys, *ids
                )
            except Exception as exc:
                # Every follower learns of it (the next read would have used the same connection);
                # a later follow starts a new reader.
                for follower in {f for followers in self._followers.values() for f in followers}:
                    follower._fail(exc)
                self._followers.clear()
                return
            resumed_at = dict(zip(keys, ids, strict=True))
            for key, entries in reply or ():
                if key == keys[0]:
                    self._wake_last = entries[-1][0]
                    continue
                # Followers may have come or gone while the read blocked: each compares with where it resumed.
                for follower in self._followers.get(key, ()):
                    follower._deliver(key, entries, resumed_at[key])


def _log_failed_wake(replies: asyncio.Future[list[Any]]) -> None:
    if replies.cancelled():
        return
    try:
        checked(replies.result())
    except redis.RedisError as error:
        # The read then returns at its timeout instead, or with the next entry of another stream.
        logger.warning("could not wake the stream hub: %s", error)
