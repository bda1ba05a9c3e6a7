"""How a streamed call's events reach the client's socket: the writes that the relay makes, on the test Redis."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import devstack
from routing.calls import worker_loop
from routing.calls.events import CallEvent, Done, Failed, Figures, Started, Text, encode
from routing.calls.keys import stream_key
from routing.calls.stream import read_events
from routing.gateway.app import _send_stream
from routing.gateway.http import Response
from routing.gateway.relay import sse_stream
from tests.call_specs import call_spec

DONE = Done(Figures(model="up/m", input_tokens=3, output_tokens=2))


@pytest.fixture
def call_id(redis_url: str) -> Iterator[str]:
    call_id = f"test-{uuid.uuid4().hex}"
    yield call_id
    redis.Redis.from_url(redis_url).delete(stream_key(call_id))


def publish(redis_url: str, call_id: str, *events: CallEvent) -> None:
    """Append `events` in one transaction, so that a reader gets them in one read, as a worker's write of several."""
    with redis.Redis.from_url(redis_url).pipeline() as pipe:
        for event in events:
            _, kind, _, data = encode(event)
            pipe.xadd(stream_key(call_id), {"t": kind, "d": data})
        pipe.execute()


async def relay_to(send: Any, call_id: str) -> None:
    """What the gateway does with a streamed call's events, from the first batch on."""
    events = read_events(call_id, deadline=time.monotonic() + 10)
    batch = await anext(events)
    while not batch:
        batch = await anext(events)
    stream = sse_stream(call_spec("up/m", call_id=call_id), batch, events, include_usage=True)
    await _send_stream(send, Response(200, stream=stream))


def relayed(call_id: str, *, on_write: Any = None) -> list[dict[str, Any]]:
    """The ASGI messages that the gateway sends for the call's stream (the same loop and hub as a web process's)."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if on_write is not None:
            on_write(len(sent))

    worker_loop.run(relay_to(send, call_id))
    return sent


def data_lines(message: dict[str, Any]) -> list[Any]:
    lines = [line for line in message["body"].decode().split("\n\n") if line]
    return [line if line == "data: [DONE]" else json.loads(line.removeprefix("data: ")) for line in lines]


def test_events_read_together_go_out_in_one_write_and_the_end_ends_the_response(redis_url: str, call_id: str) -> None:
    publish(redis_url, call_id, Started("up/m"), Text("Hel"))

    def after(writes: int) -> None:
        if writes == 2:
            publish(redis_url, call_id, Text("lo"), DONE)

    head, first, last = relayed(call_id, on_write=after)

    assert head["type"] == "http.response.start"
    assert first["more_body"] is True
    role, hel = data_lines(first)
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert hel["choices"][0]["delta"] == {"content": "Hel"}
    # The last text, the finish, the usage and [DONE] in one write, which also ends the response.
    assert last["more_body"] is False
    lo, finish, usage, done = data_lines(last)
    assert lo["choices"][0]["delta"] == {"content": "lo"}
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "attempts": [],
    }
    assert done == "data: [DONE]"


def test_a_call_whose_events_are_all_there_is_answered_in_one_write(redis_url: str, call_id: str) -> None:
    publish(
        redis_url,
        call_id,
        Started("up/m"),
        Text("Hi"),
        Text("!"),
        Failed(Figures(model="up/m"), "unavailable", "the provider went away", after_output=True),
    )

    head, body = relayed(call_id)

    assert body["more_body"] is False
    role, hi, bang, error = data_lines(body)
    assert [hi["choices"][0]["delta"], bang["choices"][0]["delta"]] == [{"content": "Hi"}, {"content": "!"}]
    assert error["error"]["code"] == "unavailable"


def test_a_quiet_stream_gets_a_keepalive_comment_and_then_its_end(redis_url: str, call_id: str) -> None:
    """A model that pauses longer than one read's wait: the client gets a comment, so that no proxy drops it."""
    publish(redis_url, call_id, Started("up/m"), Text("Hi"))

    def after(writes: int) -> None:
        if writes == 3:
            publish(redis_url, call_id, DONE)

    head, first, keepalive, last = relayed(call_id, on_write=after)

    assert keepalive == {"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True}
    assert last["more_body"] is False
    assert data_lines(last)[-1] == "data: [DONE]"


def test_a_stream_whose_redis_goes_away_ends_with_an_error_event(settings: Any, tmp_path: Path) -> None:
    """Not a cut connection: the client's SDK raises the stream's error, and the response ends properly."""
    own_redis: list[devstack.Child] = []
    url = devstack.start_redis(devstack.free_port(), port_hint="", into=own_redis, directory=tmp_path)
    try:
        # The clients of the new event loop below are made with it.
        settings.REDIS_URL = url
        call_id = f"test-{uuid.uuid4().hex}"
        publish(url, call_id, Started("up/m"), Text("Hel"))
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if len(sent) == 2:
                devstack.stop(own_redis)

        asyncio.run(relay_to(send, call_id))
    finally:
        devstack.stop(own_redis)

    head, first, last = sent
    assert first["more_body"] is True
    assert last["more_body"] is False
    [error] = data_lines(last)
    assert error["error"]["code"] == "stream_lost"
