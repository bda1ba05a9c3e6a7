"""One XREAD for every followed stream (fastpath/stream_hub.py), against a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import redis

import devstack
from fastpath import stream_hub
from fastpath.resp import RespClient
from fastpath.stream_hub import Follower, StreamHub

T = TypeVar("T")


def with_hub(url: str, work: Callable[[StreamHub, RespClient], Awaitable[T]], *, reader_url: str = "") -> T:
    async def run() -> T:
        reader = RespClient(reader_url or url, timeout=5, connect_timeout=2)
        waker = RespClient(url, timeout=5, connect_timeout=2)
        try:
            return await work(StreamHub(reader, waker), waker)
        finally:
            reader.close()
            waker.close()

    return asyncio.run(run())


async def values(follower: Follower, count: int, timeout: float = 5) -> list[bytes]:
    """The `v` fields of the next `count` entries."""
    found: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        for _, _, fields in await follower.entries(timeout=deadline - time.monotonic()):
            found.append(dict(zip(fields[::2], fields[1::2], strict=True))[b"v"])
    return found


@pytest.fixture
def keys(redis_url: str) -> Iterator[list[str]]:
    names = [f"test:hub:{uuid.uuid4().hex}" for _ in range(3)]
    yield names
    redis.Redis.from_url(redis_url).delete(*names)


def test_a_follower_gets_the_entries_before_and_after_it_followed_in_order(redis_url: str, keys: list[str]) -> None:
    async def work(hub: StreamHub, client: RespClient) -> list[bytes]:
        await client.execute("XADD", keys[0], "*", "v", "1")
        async with hub.follow(keys[0]) as follower:
            first = await values(follower, 1)
            await client.pipeline([("XADD", keys[0], "*", "v", "2"), ("XADD", keys[0], "*", "v", "3")])
            return first + await values(follower, 2)

    assert with_hub(redis_url, work) == [b"1", b"2", b"3"]


def test_a_follower_starts_after_the_entry_it_names(redis_url: str, keys: list[str]) -> None:
    async def work(hub: StreamHub, client: RespClient) -> list[bytes]:
        first = await client.execute("XADD", keys[0], "*", "v", "1")
        await client.execute("XADD", keys[0], "*", "v", "2")
        async with hub.follow(keys[0], after=first.decode()) as follower:
            return await values(follower, 1)

    assert with_hub(redis_url, work) == [b"2"]


def test_a_stream_followed_while_the_read_blocks_joins_it_at_once(redis_url: str, keys: list[str]) -> None:
    async def work(hub: StreamHub, client: RespClient) -> tuple[list[bytes], list[bytes], float]:
        async with hub.follow(keys[0]) as quiet:
            # The read now blocks on the quiet stream alone.
            assert await quiet.entries(timeout=0.2) == []
            await client.execute("XADD", keys[1], "*", "v", "b")
            started = time.monotonic()
            async with hub.follow(keys[1]) as newcomer:
                joined = await values(newcomer, 1, timeout=stream_hub.READ_BLOCK_MS / 1000 / 2)
            waited = time.monotonic() - started
            await client.execute("XADD", keys[0], "*", "v", "a")
            return joined, await values(quiet, 1), waited

    joined, quiet, waited = with_hub(redis_url, work)
    assert (joined, quiet) == ([b"b"], [b"a"])
    assert waited < stream_hub.READ_BLOCK_MS / 1000 / 2, "the newcomer waited for the read's timeout"


def test_each_follower_gets_only_its_own_stream(redis_url: str, keys: list[str]) -> None:
    async def work(hub: StreamHub, client: RespClient) -> list[list[bytes]]:
        async with hub.follow(keys[0]) as one, hub.follow(keys[1]) as two, hub.follow(keys[2]) as three:
            await client.pipeline([("XADD", key, "*", "v", key[-4:]) for key in keys for _ in range(2)])
            return [await values(follower, 2) for follower in (one, two, three)]

    assert with_hub(redis_url, work) == [[key[-4:].encode()] * 2 for key in keys]


def test_one_follower_of_several_streams_gets_each_entry_with_its_stream(redis_url: str, keys: list[str]) -> None:
    async def work(hub: StreamHub, client: RespClient) -> list[tuple[bytes, bytes]]:
        first = await client.execute("XADD", keys[0], "*", "v", "old")
        async with hub.follow_many({keys[0]: first.decode(), keys[1]: "0-0"}) as follower:
            await client.pipeline([("XADD", keys[1], "*", "v", "b"), ("XADD", keys[0], "*", "v", "a")])
            got: list[tuple[bytes, bytes]] = []
            while len(got) < 2:
                got += [(key, fields[1]) for key, _, fields in await follower.entries(timeout=5)]
            return got

    assert sorted(with_hub(redis_url, work)) == sorted([(keys[0].encode(), b"a"), (keys[1].encode(), b"b")])


def test_two_followers_of_one_stream_each_get_the_entries_after_their_own_start(
    redis_url: str, keys: list[str]
) -> None:
    """Two pages showing the same run, one of them resuming later in the stream."""

    async def work(hub: StreamHub, client: RespClient) -> tuple[list[bytes], list[bytes]]:
        first = await client.execute("XADD", keys[0], "*", "v", "1")
        async with hub.follow(keys[0], after=first.decode()) as later:
            await client.execute("XADD", keys[0], "*", "v", "2")
            assert await values(later, 1) == [b"2"]
            async with hub.follow(keys[0]) as whole:
                await client.execute("XADD", keys[0], "*", "v", "3")
                from_start = await values(whole, 3)
                after_first = await values(later, 1)
                # Nothing twice: neither gets more.
                assert await later.entries(timeout=0.2) == await whole.entries(timeout=0.2) == []
                return from_start, after_first

    assert with_hub(redis_url, work) == ([b"1", b"2", b"3"], [b"3"])


def test_a_follower_that_joins_further_back_during_a_read_misses_nothing(redis_url: str, keys: list[str]) -> None:
    """The read under way resumes where the first follower is; the newcomer's earlier entries come with the next."""

    async def work(hub: StreamHub, client: RespClient) -> tuple[list[bytes], list[bytes]]:
        await client.execute("XADD", keys[0], "*", "v", "1")
        second = await client.execute("XADD", keys[0], "*", "v", "2")
        async with hub.follow(keys[0], after=second.decode()) as ahead:
            assert await ahead.entries(timeout=0.2) == []
            # Written before the newcomer's wake, in the same write: the blocked read returns with it.
            await client.submit([("XADD", keys[0], "*", "v", "3")])
            async with hub.follow(keys[0]) as behind:
                from_start = await values(behind, 3)
                ahead_got = await values(ahead, 1)
                assert await ahead.entries(timeout=0.2) == await behind.entries(timeout=0.2) == []
                return from_start, ahead_got

    assert with_hub(redis_url, work) == ([b"1", b"2", b"3"], [b"3"])


def test_a_quiet_stream_gives_no_entries_after_the_timeout(redis_url: str, keys: list[str]) -> None:
    async def work(hub: StreamHub, client: RespClient) -> list[object]:
        async with hub.follow(keys[0]) as follower:
            return list(await follower.entries(timeout=0.1))

    assert with_hub(redis_url, work) == []


def test_a_failed_read_is_raised_to_every_follower(redis_url: str, keys: list[str]) -> None:
    unreachable = f"redis://127.0.0.1:{devstack.free_port()}/0"

    async def work(hub: StreamHub, client: RespClient) -> int:
        failures = 0
        async with hub.follow(keys[0]) as one, hub.follow(keys[1]) as two:
            for follower in (one, two):
                with pytest.raises(redis.ConnectionError):
                    await follower.entries(timeout=5)
                failures += 1
        return failures

    assert with_hub(redis_url, work, reader_url=unreachable) == 2


def test_entries_read_before_a_failed_read_are_taken_before_the_failure(redis_url: str, keys: list[str]) -> None:
    async def run() -> list[bytes]:
        reader = RespClient(redis_url, timeout=5, connect_timeout=2)
        waker = RespClient(redis_url, timeout=5, connect_timeout=2)
        try:
            await waker.execute("XADD", keys[0], "*", "v", "1")
            async with StreamHub(reader, waker).follow(keys[0]) as follower:
                # Time for the hub to read the entry and block again; then its connection breaks.
                await asyncio.sleep(0.3)
                reader.close()
                await asyncio.sleep(0.1)
                first = await values(follower, 1)
                with pytest.raises(redis.ConnectionError):
                    await follower.entries(timeout=5)
                return first
        finally:
            waker.close()

    assert asyncio.run(run()) == [b"1"]
