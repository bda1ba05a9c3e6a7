from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready


@shared_task(name="routing.run_calls", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_calls_task(specs: list[dict[str, Any]]) -> None:
    """Run the calls of one task message side by side; acknowledged once the last has ended."""
    from routing.calls import worker_loop
    from routing.calls.runner import calls_run
    from routing.calls.spec import CallSpec

    worker_loop.run(calls_run([CallSpec.from_json(spec) for spec in specs]))


@worker_ready.connect
def prepare_for_calls(**_: Any) -> None:
    """Load the token ranks (~0.5 s) before the first call, not during it; then settle the heap."""
    from fastpath import heap
    from routing import tokens

    tokens.encoding()
    heap.settle()
