from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready


@shared_task(name="routing.run_call", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_call_task(spec: dict[str, Any]) -> None:
    from routing import call_loop
    from routing.call_spec import CallSpec
    from routing.calls import call_run

    call_loop.run(call_run(CallSpec.from_json(spec)))


@worker_ready.connect
def load_tokenizer(**_: Any) -> None:
    """Load the token ranks (~0.5 s) before the first call, not during it."""
    from routing import tokens

    tokens.encoding()
