"""A call's event stream as the test Redis holds it, decoded by the call's own vocabulary."""

from __future__ import annotations

from routing.calls.events import CallEvent, decode
from routing.calls.keys import stream_key
from switchyard.redis_clients import get_redis


def stream_entries(call_id: str) -> list[tuple[bytes, CallEvent]]:
    """(entry id, event) of every entry of the call's stream, in order."""
    # redis-py gives an entry's fields as a dict; the decoder takes the flat list that XRANGE sends.
    return [
        (entry_id, decode([item for pair in fields.items() for item in pair]))
        for entry_id, fields in get_redis().xrange(stream_key(call_id))
    ]


def stream_events(call_id: str) -> list[CallEvent]:
    return [event for _, event in stream_entries(call_id)]
