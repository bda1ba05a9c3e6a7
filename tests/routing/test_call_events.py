"""The worker's side of a call's event stream, on the test Redis: text coalescing and its order."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from routing.call_events import CallPublisher, stream_key


@pytest.fixture
def publisher(redis_url: str, settings: Any) -> Iterator[CallPublisher]:
    settings.STREAM_COALESCE_MS = 200
    published = CallPublisher(f"test-{uuid.uuid4().hex}")
    yield published
    published.redis.delete(stream_key(published.call_id))


def entries(publisher: CallPublisher) -> list[tuple[str, Any]]:
    client: redis.Redis = publisher.redis
    return [(f[b"t"].decode(), json.loads(f[b"d"])) for _, f in client.xrange(stream_key(publisher.call_id))]


def test_the_first_text_goes_out_at_once_and_the_rest_together_before_the_next_event(
    publisher: CallPublisher,
) -> None:
    publisher.publish("start", {"model": "m"})
    for piece in ["Hel", "lo", ", ", "wor", "ld"]:
        publisher.publish_text(piece)
    assert entries(publisher) == [("start", {"model": "m"}), ("delta", {"c": "Hel"})]
    publisher.publish("done", {"finish": "stop"})
    assert entries(publisher) == [
        ("start", {"model": "m"}),
        ("delta", {"c": "Hel"}),
        ("delta", {"c": "lo, world"}),
        ("done", {"finish": "stop"}),
    ]


def test_held_text_goes_out_by_itself_when_the_model_pauses(publisher: CallPublisher) -> None:
    publisher.publish_text("one")
    publisher.publish_text(" two")
    publisher.publish_text(" three")
    assert entries(publisher) == [("delta", {"c": "one"})]
    deadline = time.monotonic() + 5
    while len(entries(publisher)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert entries(publisher) == [("delta", {"c": "one"}), ("delta", {"c": " two three"})]
    assert not publisher.holds_text()


def test_text_under_a_short_window_arrives_whole_in_order_and_in_fewer_events(publisher: CallPublisher) -> None:
    publisher.window = 0.01
    pieces = [f"{n} " for n in range(200)]
    for n, piece in enumerate(pieces):
        publisher.publish_text(piece)
        if n % 20 == 0:
            time.sleep(0.015)
    publisher.publish("done", {})
    texts = [data["c"] for kind, data in entries(publisher) if kind == "delta"]
    assert "".join(texts) == "".join(pieces)
    assert 1 < len(texts) < len(pieces)
    assert entries(publisher)[-1][0] == "done"


def test_no_window_sends_every_piece_as_it_comes(publisher: CallPublisher) -> None:
    publisher.window = 0
    for piece in "abc":
        publisher.publish_text(piece)
    assert [data["c"] for _, data in entries(publisher)] == ["a", "b", "c"]
