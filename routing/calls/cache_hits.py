"""A call answered from the response cache (routing/resilience/cache.py): its events, its booking, its hand-over.

A hit is answered as the model answered then: a stream (its start, its
text, its tool calls, then its end with the original's usage) or a body,
and booked like any call, with the original's tokens, no cost beyond what
the call paid before it ran (a classifier), and the saving.

Where it is found:

- by the web (call_start), before the call is enqueued: the web answers it
  and no worker runs it. Before the answer goes out, one MULTI counts its
  spend (releasing its reservation) and pushes a booking message to the
  workers' queue (`cache_hit_answer`): a web process that dies after
  answering has handed the booking over already, and with every worker down
  the message waits in the queue. A worker inserts the record from the
  message's terminal event, as it books a run that died after announcing
  its end (booking_from_terminal): once per call id, however often the
  message is delivered (`cache_hits_book`).
- by the worker (routing/calls/runner.py), for a call that waited for an
  identical call in flight: it replays the answer on the call's stream and
  books it as it books any call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from billing.models import CACHE_HIT, UsageRecord
from billing.services import UsageBooking, price_of, spend_count_commands, tokens_cost, usage_record_new
from fastpath.coalesce import Coalescer
from fastpath.resp import Command, checked
from fastpath.task_message import task_message
from routing.calls.attempts import Attempt, skipped_attempts
from routing.calls.booking import booking_from_terminal, figures_of, record_insert
from routing.calls.events import CallEvent, Done, Figures, Started, Text, ToolPiece
from routing.calls.spec import CallSpec, spec_extra_cost
from routing.catalog import Catalog, CatalogModel, aget_catalog
from routing.resilience.cache import CachedAnswer
from routing.tasks import book_cache_hits_task
from switchyard.celery import app as celery_app
from switchyard.redis_clients import get_resp

# The hits of one booking message are inserted in one transaction, by one worker.
MAX_HITS_PER_MESSAGE = 16


def cache_hit_attempts(spec: CallSpec, cached: CachedAnswer) -> list[Attempt]:
    """The attempts of a hit: the models left out before it, then its model's answer from the cache."""
    return [*skipped_attempts(spec), Attempt(cached.model, cached.provider, CACHE_HIT)]


def cache_hit_booking(
    spec: CallSpec, catalog: Catalog, cached: CachedAnswer, attempts: Sequence[Attempt], latency_ms: int
) -> UsageBooking:
    """The booking of a hit: the original's tokens, at no cost, with what its model would have cost."""
    model = catalog.models.get(cached.model)
    return UsageBooking(
        spec=spec,
        model=model,
        status="ok",
        attempts=[attempt.as_json() for attempt in attempts],
        input_tokens=cached.input_tokens,
        output_tokens=cached.output_tokens,
        cached_input_tokens=cached.cached_input_tokens,
        cache_write_tokens=cached.cache_write_tokens,
        reasoning_tokens=cached.reasoning_tokens,
        tokens_estimated=cached.tokens_estimated,
        latency_ms=latency_ms,
        # No model sent a first token: the models' measured times to it (the fastest strategy's) stay theirs.
        ttft_ms=None,
        error_kind="",
        finish_reason=cached.finish,
        extra_cost=spec_extra_cost(spec),
        cache_hit=True,
        cache_saving=_saving(model, cached, spec),
    )


def cache_hit_events(
    spec: CallSpec, cached: CachedAnswer, attempts: Sequence[Attempt], figures: Figures
) -> list[CallEvent]:
    """The events of a hit, ending with its Done: those of a streamed call, or a Done holding the whole answer."""
    if not spec.publish_deltas:
        return [Done(figures, cached.finish, cached.text, cached.tool_calls)]
    events: list[CallEvent] = [
        Started(cached.model, cached.provider, tuple(a.as_json() for a in attempts), cache_hit=True)
    ]
    if cached.text:
        events.append(Text(cached.text))
    events.extend(ToolPiece(i, call["id"], call["name"], call["arguments"]) for i, call in enumerate(cached.tool_calls))
    events.append(Done(figures, cached.finish))
    return events


async def cache_hit_answer(spec: CallSpec, catalog: Catalog, cached: CachedAnswer, latency_ms: int) -> list[CallEvent]:
    """Answer a call from the web with the hit `cached`: its events, once its booking is handed to the workers.

    Raises redis.RedisError when the booking could not be handed over: the
    call is then not answered, as a call that could not be enqueued.
    """
    attempts = cache_hit_attempts(spec, cached)
    record = usage_record_new(cache_hit_booking(spec, catalog, cached, attempts, latency_ms))
    events = cache_hit_events(spec, cached, attempts, figures_of(record))
    done = events[-1]
    assert isinstance(done, Done)
    await _handing_over.submit(_Hit(spec, record, done, cached.text))
    return events


@dataclass(frozen=True, slots=True)
class _Hit:
    spec: CallSpec
    record: UsageRecord
    done: Done
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "done": self.done.to_data(), "text": self.text}


def cache_hits_message(hits: Sequence[dict[str, Any]]) -> bytes:
    """The task message that books `hits` (each as _Hit.to_json gives it; its id is the first call's)."""
    ids = [hit["spec"]["call_id"] for hit in hits]
    return task_message(
        celery_app,
        task_name=book_cache_hits_task.name,
        task_id=ids[0],
        args=[list(hits)],
        argsrepr=f"[cache hits {' '.join(ids)}]",
        queue=celery_app.conf.task_default_queue,
    )


async def _hand_over(hits: list[_Hit]) -> list[None]:
    """Count the hits' spend and push their booking message, all or nothing, in one round trip."""
    queue = celery_app.conf.task_default_queue
    commands: list[Command] = []
    for start in range(0, len(hits), MAX_HITS_PER_MESSAGE):
        batch = hits[start : start + MAX_HITS_PER_MESSAGE]
        commands.append(("LPUSH", queue, cache_hits_message([hit.to_json() for hit in batch])))
    counting = spend_count_commands([hit.record for hit in hits])
    replies = await get_resp().pipeline([("MULTI",), *counting, *commands, ("EXEC",)])
    executed = replies[-1]
    if executed is None:
        raise redis.ResponseError("the booking of a cache hit was not executed")
    checked(executed)
    return [None] * len(hits)


# The hits answered while a hand-over is on its way go together in the next one.
_handing_over: Coalescer[_Hit, None] = Coalescer(_hand_over)


async def cache_hits_book(hits: Sequence[dict[str, Any]]) -> None:
    """Insert the records of hits the web answered (a booking message's), each once; their spend is counted."""
    catalog = await aget_catalog()
    await asyncio.gather(*(_book(catalog, hit) for hit in hits))


async def _book(catalog: Catalog, hit: dict[str, Any]) -> None:
    spec = CallSpec.from_json(hit["spec"])
    done = Done.from_data(hit["done"])
    record = usage_record_new(booking_from_terminal(spec, catalog, done))
    # Booked already (the message delivered again): its spend was counted once, by the web, all the same.
    await record_insert(spec, record, done, hit["text"])


def _saving(model: CatalogModel | None, cached: CachedAnswer, spec: CallSpec) -> Decimal | None:
    """What the cached answer would cost from its model at the call's prices; None when that is not known."""
    price = price_of(model, spec.created_at) if model is not None else None
    if price is None:
        return None
    return tokens_cost(
        price,
        input_tokens=cached.input_tokens,
        output_tokens=cached.output_tokens,
        cached_input_tokens=cached.cached_input_tokens,
        cache_write_tokens=cached.cache_write_tokens,
    )
