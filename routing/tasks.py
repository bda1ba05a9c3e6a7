"""The Celery task that runs calls. It only hands them to the worker's event loop (routing/calls/)."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject
from celery.signals import worker_ready


@shared_task(name="routing.run_calls", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_calls_task(self: Task, specs: list[dict[str, Any]]) -> None:
    """Run the calls of one task message side by side; acknowledged once the last has ended and been booked."""
    from routing.calls import worker_loop
    from routing.calls.booking import BookingFailed
    from routing.calls.recovery import calls_run
    from routing.calls.spec import CallSpec

    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        worker_loop.run(calls_run([CallSpec.from_json(spec) for spec in specs], redelivered=redelivered))
    except BookingFailed as exc:
        # Back to the queue, not acknowledged: the next delivery books the calls from their streams.
        raise Reject(exc, requeue=True) from exc


@shared_task(name="routing.book_cache_hits", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def book_cache_hits_task(self: Task, hits: list[dict[str, Any]]) -> None:
    """Book the calls the web answered from the response cache (routing/calls/cache_hits.py), each once."""
    from routing.calls import worker_loop
    from routing.calls.booking import BookingFailed
    from routing.calls.cache_hits import cache_hits_book

    try:
        worker_loop.run(cache_hits_book(hits))
    except BookingFailed as exc:
        raise Reject(exc, requeue=True) from exc


@shared_task(name="routing.measure_model_health", ignore_result=True)
def measure_model_health_task() -> None:
    """Measure how each model has been doing lately, for the strategies that read it (every minute)."""
    from routing.model_health import model_health_measure, model_health_store

    model_health_store(model_health_measure())


@worker_ready.connect
def prepare_for_calls(**_: Any) -> None:
    """Load the token ranks (~0.5 s) before the first call, not during it; then settle the heap."""
    from fastpath import heap
    from routing import tokens

    tokens.encoding()
    heap.settle()


@shared_task(name="routing.train_router_model", ignore_result=True)
def train_router_model_task(route_id: int) -> None:
    """Train a learned route's model (started from the admin); a failure is kept for the route's admin page."""
    from routing.learned.training import router_model_train_or_record

    router_model_train_or_record(route_id=route_id)
