"""The worker's side of a call's event stream, on the test Redis: text coalescing and its order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import redis

from routing.calls import worker_loop
from routing.calls.events import CallEvent, Done, Figures, Started, Text, ToolPiece, decode, encode
from routing.calls.keys import stream_key
from routing.calls.stream import BOOKED_STREAM_TTL_SECONDS, STREAM_TTL_SECONDS, CallPublisher, stream_read_to_end
from tests.call_streams import stream_events

DONE = Done(Figures(model="m"))

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


def entries(call_id: str, redis_url: str) -> list[CallEvent]:
    return stream_events(call_id)


async def written(publisher: CallPublisher) -> None:
    """Return once Redis has run every send queued so far: it runs a connection's commands in order."""
    await publisher.redis.execute("PING")


def test_the_first_text_goes_out_at_once_and_the_rest_together_before_the_next_event(
    call_id: str, redis_url: str
) -> None:
    async def work(publisher: CallPublisher) -> list[CallEvent]:
        await publisher.publish(Started("m"))
        for piece in ["Hel", "lo", ", ", "wor", "ld"]:
            await publisher.publish_text(piece)
        await written(publisher)
        before_done = entries(call_id, redis_url)
        await publisher.publish(DONE)
        return before_done

    assert on_loop(work, call_id) == [Started("m"), Text("Hel")]
    assert entries(call_id, redis_url) == [
        Started("m"),
        Text("Hel"),
        Text("lo, world"),
        DONE,
    ]


def test_held_text_goes_out_by_itself_when_the_model_pauses(call_id: str, redis_url: str) -> None:
    async def work(publisher: CallPublisher) -> list[CallEvent]:
        for piece in ["one", " two", " three"]:
            await publisher.publish_text(piece)
        await written(publisher)
        held = entries(call_id, redis_url)
        await asyncio.sleep(0.5)
        return held

    assert on_loop(work, call_id) == [Text("one")]
    assert entries(call_id, redis_url) == [Text("one"), Text(" two three")]


def test_text_under_a_short_window_arrives_whole_in_order_and_in_fewer_events(call_id: str, redis_url: str) -> None:
    pieces = [f"{n} " for n in range(200)]

    async def work(publisher: CallPublisher) -> None:
        for n, piece in enumerate(pieces):
            await publisher.publish_text(piece)
            if n % 20 == 0:
                await asyncio.sleep(0.015)
        await publisher.publish(DONE)

    on_loop(work, call_id, window_ms=10)
    texts = [event.text for event in entries(call_id, redis_url) if isinstance(event, Text)]
    assert "".join(texts) == "".join(pieces)
    assert 1 < len(texts) < len(pieces)
    assert entries(call_id, redis_url)[-1] == DONE


def test_no_window_sends_every_piece_as_it_comes(call_id: str, redis_url: str) -> None:
    async def work(publisher: CallPublisher) -> None:
        for piece in "abc":
            await publisher.publish_text(piece)

    on_loop(work, call_id, window_ms=0)
    assert entries(call_id, redis_url) == [Text("a"), Text("b"), Text("c")]


def test_the_start_carries_the_first_text_after_it_in_one_send(call_id: str, redis_url: str) -> None:
    async def work(publisher: CallPublisher) -> None:
        await publisher.publish(Started("m"), text="Hel")
        await publisher.publish_text("lo")
        await publisher.publish(DONE)

    on_loop(work, call_id)
    assert entries(call_id, redis_url) == [
        Started("m"),
        Text("Hel"),
        Text("lo"),
        DONE,
    ]


def test_a_stream_is_kept_an_hour_while_its_call_runs_until_it_is_booked_then_a_minute(
    call_id: str, redis_url: str
) -> None:
    """With no reader to say it is done (a playground run): live readers have a minute after the booking."""
    client = redis.Redis.from_url(redis_url)

    async def work(publisher: CallPublisher) -> tuple[int, int]:
        await publisher.publish(Started("m"), text="Hel")
        await written(publisher)
        running = client.ttl(stream_key(call_id))
        await publisher.publish(DONE)
        ended = client.ttl(stream_key(call_id))
        await publisher.booked()
        return running, ended

    running, ended = on_loop(work, call_id)
    assert running > STREAM_TTL_SECONDS - 5
    assert ended > STREAM_TTL_SECONDS - 5, "a redelivery may need the terminal event until the record is in"
    assert BOOKED_STREAM_TTL_SECONDS - 5 < client.ttl(stream_key(call_id)) <= BOOKED_STREAM_TTL_SECONDS


@pytest.mark.parametrize("reader_first", [True, False])
def test_a_stream_goes_once_its_reader_has_read_the_end_and_its_call_is_booked(
    call_id: str, redis_url: str, reader_first: bool
) -> None:
    client = redis.Redis.from_url(redis_url)

    async def work(publisher: CallPublisher) -> bool:
        await publisher.publish(Started("m"), text="Hi")
        await publisher.publish(DONE)
        if reader_first:
            await stream_read_to_end(call_id)
            await written(publisher)
            kept = bool(client.exists(stream_key(call_id)))
            await publisher.booked()
        else:
            await publisher.booked()
            kept = bool(client.exists(stream_key(call_id)))
            await stream_read_to_end(call_id)
            await written(publisher)
        return kept

    assert on_loop(work, call_id), "the stream went before both ends were done with it"
    assert not client.exists(stream_key(call_id))
    assert not client.keys(f"sy:call:{call_id}:*")


def test_a_send_that_redis_refused_is_raised_by_the_next_send_and_by_the_terminal_event(
    call_id: str, redis_url: str
) -> None:
    # Not a stream: Redis refuses every XADD to it.
    redis.Redis.from_url(redis_url).set(stream_key(call_id), "not a stream")

    async def next_send(publisher: CallPublisher) -> None:
        await publisher.publish(Started("m"))
        await written(publisher)
        await publisher.publish(ToolPiece(0))

    async def terminal(publisher: CallPublisher) -> None:
        await publisher.publish(Started("m"), text="Hi")
        await publisher.publish(DONE)

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        on_loop(next_send, call_id)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        on_loop(terminal, call_id)


def test_a_terminal_event_carries_the_parts_of_its_usage_and_an_older_one_without_them_reads_0() -> None:
    figures = Figures(
        model="claude/sonnet",
        input_tokens=5_497,
        output_tokens=700,
        cached_input_tokens=4_096,
        cache_write_tokens=1_024,
        reasoning_tokens=600,
        cost="0.0071748000",
    )
    fields = [value.encode() for value in encode(Done(figures))]

    assert decode(fields) == Done(figures)
    # As a worker that did not know the parts wrote it.
    older = b'{"model":"m","usage":{"input":19,"output":10,"estimated":false},"cost":"0.0000088500","finish":"stop"}'
    assert decode([b"t", b"done", b"d", older]) == Done(
        Figures(model="m", input_tokens=19, output_tokens=10, cost="0.0000088500")
    )
