"""Keep each column's row in step with its call, whoever is watching.

The worker sends routing.calls.booking.call_finished in the transaction that
books a call, before publishing a playground call's terminal event, so a page
that reacts to that event, or is opened later, reads the panel's final answer
and figures from the database.
"""

from __future__ import annotations

from typing import Any

from playground.services import run_panel_finish
from routing.calls.booking import call_finished
from routing.calls.spec import CallSpec


def call_finished_received(
    sender: Any, *, spec: CallSpec, record: Any, text: str, error: dict[str, Any] | None, **kwargs: Any
) -> None:
    if spec.source == "playground":
        run_panel_finish(call_id=spec.call_id, record=record, text=text, error=error)


def connect() -> None:
    call_finished.connect(call_finished_received, dispatch_uid="playground-call-finished")
