"""The worker's side of a call's event stream, on the test Redis: text coalescing and its order."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from routing.calls import worker_loop
from routing.calls.stream import STREAM_TTL_SECONDS, CallPublisher, ended_stream_ttl, stream_key

T = TypeVar("T")


def on_loop(work: Callable[[CallPublisher], Awaitable[T]], call_id: str, window_ms: float = 200) -> T:
    """Run `work` with a new publisher of `call_id` on the worker's call loop, as a call would."""

    async def run() -> T:
        publisher = CallPublisher(call_id)
        publisher.window = window_ms / 1000
        return await work(publisher)

    return worker_loop.run(run())


@pytest.fixture
def call_id(redis_url: str) -> Iterator[str]:
    call_id = f"test-{uuid.uuid4().hex}"
    yield call_id
    redis.Redis.from_url(redis_url).delete(stream_key(call_id))


def entries(call_id: str, redis_url: str) -> list[tuple[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    return [(f[b"t"].decode(), json.loads(f[b"d"])) for _, f in client.xrange(stream_key(call_id))]


async def written(publisher: CallPublisher) -> None:
    """Return once Redis has run every send queued so far: it runs a connection's commands in order."""
    await publisher.redis.execute("PING")


def test_the_first_text_goes_out_at_once_and_the_rest_together_before_the_next_event(
    call_id: str, redis_url: str
) -> None:
    async def work(publisher: CallPublisher) -> list[tuple[str, Any]]:
        await publisher.publish("start", {"model": "m"})
        for piece in ["Hel", "lo", ", ", "wor", "ld"]:
            await publisher.publish_text(piece)
        await written(publisher)
        before_done = entries(call_id, redis_url)
        await publisher.publish("done", {"finish": "stop"})
        return before_done

    assert on_loop(work, call_id) == [("start", {"model": "m"}), ("delta", {"c": "Hel"})]
    assert entries(call_id, redis_url) == [
        ("start", {"model": "m"}),
        ("delta", {"c": "Hel"}),
        ("delta", {"c": "lo, world"}),
        ("done", {"finish": "stop"}),
    ]


def test_held_text_goes_out_by_itself_when_the_model_pauses(call_id: str, redis_url: str) -> None:
    async def work(publisher: CallPublisher) -> list[tuple[str, Any]]:
        for piece in ["one", " two", " three"]:
            await publisher.publish_text(piece)
        await written(publisher)
        held = entries(call_id, redis_url)
        await asyncio.sleep(0.5)
        return held

    assert on_loop(work, call_id) == [("delta", {"c": "one"})]
    assert entries(call_id, redis_url) == [("delta", {"c": "one"}), ("delta", {"c": " two three"})]


def test_text_under_a_short_window_arrives_whole_in_order_and_in_fewer_events(call_id: str, redis_url: str) -> None:
    pieces = [f"{n} " for n in range(200)]

    async def work(publisher: CallPublisher) -> None:
        for n, piece in enumerate(pieces):
            await publisher.publish_text(piece)
            if n % 20 == 0:
                await asyncio.sleep(0.015)
        await publisher.publish("done", {})

    on_loop(work, call_id, window_ms=10)
    texts = [data["c"] for kind, data in entries(call_id, redis_url) if kind == "delta"]
    assert "".join(texts) == "".join(pieces)
    assert 1 < len(texts) < len(pieces)
    assert entries(call_id, redis_url)[-1][0] == "done"


def test_no_window_sends_every_piece_as_it_comes(call_id: str, redis_url: str) -> None:
    async def work(publisher: CallPublisher) -> None:
        for piece in "abc":
            await publisher.publish_text(piece)

    on_loop(work, call_id, window_ms=0)
    assert [data["c"] for _, data in entries(call_id, redis_url)] == ["a", "b", "c"]


def test_the_start_carries_the_first_text_after_it_in_one_send(call_id: str, redis_url: str) -> None:
    async def work(publisher: CallPublisher) -> None:
        await publisher.publish("start", {"model": "m"}, text="Hel")
        await publisher.publish_text("lo")
        await publisher.publish("done", {})

    on_loop(work, call_id)
    assert entries(call_id, redis_url) == [
        ("start", {"model": "m"}),
        ("delta", {"c": "Hel"}),
        ("delta", {"c": "lo"}),
        ("done", {}),
    ]



def test_a_stream_is_kept_an_hour_while_its_call_runs_and_less_once_it_ended(call_id: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)

    async def work(publisher: CallPublisher) -> int:
        await publisher.publish("start", {"model": "m"}, text="Hel")
        await written(publisher)
        running = client.ttl(stream_key(call_id))
        await publisher.publish("done", {})
        return running

    assert on_loop(work, call_id) > STREAM_TTL_SECONDS - 5
    assert ended_stream_ttl() - 5 < client.ttl(stream_key(call_id)) <= ended_stream_ttl() < STREAM_TTL_SECONDS


def test_a_send_that_redis_refused_is_raised_by_the_next_send_and_by_the_terminal_event(
    call_id: str, redis_url: str
) -> None:
    # Not a stream: Redis refuses every XADD to it.
    redis.Redis.from_url(redis_url).set(stream_key(call_id), "not a stream")

    async def next_send(publisher: CallPublisher) -> None:
        await publisher.publish("start", {"model": "m"})
        await written(publisher)
        await publisher.publish("tool", {"i": 0})

    async def terminal(publisher: CallPublisher) -> None:
        await publisher.publish("start", {"model": "m"}, text="Hi")
        await publisher.publish("done", {"finish": "stop"})

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        on_loop(next_send, call_id)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        on_loop(terminal, call_id)
