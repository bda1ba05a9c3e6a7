"""The Redis keys of one call. Every process that touches a call finds them here."""

from __future__ import annotations


def stream_key(call_id: str) -> str:
    """The call's events (routing/calls/events.py), from the worker to whoever relays them."""
    return f"sy:call:{call_id}"


def cancel_key(call_id: str) -> str:
    """Set when the call's client went away: its worker stops the call."""
    return f"sy:call:{call_id}:cancel"


def run_key(call_id: str) -> str:
    """The lease of the run under way (routing/calls/lease.py)."""
    return f"sy:call:{call_id}:run"


def queued_key(call_id: str) -> str:
    """Set with the call's task message, removed when a worker claims it: the call is waiting in the queue."""
    return f"sy:call:{call_id}:queued"


def released_key(call_id: str) -> str:
    """Set by the first of the call's reader and worker to be done with its stream (routing/calls/stream.py)."""
    return f"sy:call:{call_id}:released"
