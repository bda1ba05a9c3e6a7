"""Handing calls to the workers without blocking the event loop.

Celery's `apply_async` is synchronous (kombu writes to Redis with a blocking
socket) and costs about a millisecond of CPU per call. On the /v1 hot path the
task message is instead built with Celery's own protocol code
(`amqp.as_task_v2`, so it follows the pinned Celery's format) and pushed with
the lean asyncio Redis client, exactly where kombu's Redis transport would put it.
The worker side is plain Celery. tests/gateway cover the round trip.

A worker spends about 2 ms of CPU on each task message it takes (kombu's
consumer, Celery's request and trace, the acknowledgement), whatever the
message holds, and a worker process can use only one core. So the calls
that come in while a push is on its way go together in one message
(fastpath/coalesce.py): alone, a call is pushed at once. While calls
come in faster than one per push, the first of a message also waits up to
DISPATCH_LINGER_MS for more: calls reach the web spread out (one every
~4 ms at concurrency 100), so without it a message carried ~1.8 calls;
with 10 ms, concurrency 100 went from ~225 to ~585 requests/s and the
worker's CPU per call from 4.2 to 1.6 ms (bench/gateway_overhead.py).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence

from django.conf import settings

from fastpath.coalesce import Coalescer
from routing.calls.spec import CallSpec
from routing.tasks import run_calls_task
from switchyard.celery import app as celery_app
from switchyard.redis_clients import get_resp

# The calls of one message run on one worker: the cap keeps a burst spread over several.
MAX_CALLS_PER_MESSAGE = 16


def task_message(specs: Sequence[CallSpec], queue: str) -> bytes:
    task_id = specs[0].call_id
    message = celery_app.amqp.as_task_v2(
        task_id,
        run_calls_task.name,
        args=[[spec.to_json() for spec in specs]],
        kwargs={},
        ignore_result=True,
        # The default is a repr of the whole specs: costly, and it holds the prompts.
        argsrepr=f"[calls {' '.join(spec.call_id for spec in specs)}]",
        kwargsrepr="{}",
    )
    body = json.dumps(message.body, separators=(",", ":")).encode()
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message.headers,
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


async def _push(specs: list[CallSpec]) -> list[None]:
    queue = celery_app.conf.task_default_queue
    messages = [
        task_message(specs[start : start + MAX_CALLS_PER_MESSAGE], queue)
        for start in range(0, len(specs), MAX_CALLS_PER_MESSAGE)
    ]
    await get_resp().execute("LPUSH", queue, *messages)
    return [None] * len(specs)


_dispatch: Coalescer[CallSpec, None] = Coalescer(
    _push, linger=settings.DISPATCH_LINGER_MS / 1000, max_items=MAX_CALLS_PER_MESSAGE
)


async def enqueue_call(spec: CallSpec) -> None:
    """Hand `spec` to the workers; return once its task message is in the queue (or raise why not)."""
    await _dispatch.submit(spec)
