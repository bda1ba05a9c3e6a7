"""Handing calls to the workers without blocking the event loop.

A worker spends about 2 ms of CPU on each task message it takes (kombu's
consumer, Celery's request and trace, the acknowledgement), whatever the
message holds, and a worker process can use only one core. So the calls
that come in while a push is on its way go together in one message
(fastpath/coalesce.py): alone, a call is pushed at once. While calls come
in faster than one per push, the first of a message also waits up to
DISPATCH_LINGER_MS for more (BENCHMARKS.md has the figures). Messages are
built and pushed by fastpath/task_message.py, not by kombu's producer.

Each call pushed also gets a queued mark (routing/calls/keys.py) that the
worker which claims it removes: a web process waiting for a call that shows
no sign of life can tell a call still in the queue from a lost one
(routing/calls/watchdog.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from fastpath.coalesce import Coalescer
from fastpath.resp import Command
from fastpath.task_message import task_message
from routing.calls.keys import queued_key
from routing.calls.spec import CallSpec
from routing.tasks import run_calls_task
from switchyard.celery import app as celery_app
from switchyard.redis_clients import get_resp

# The calls of one message run on one worker: the cap keeps a burst spread over several.
MAX_CALLS_PER_MESSAGE = 16


def calls_message(specs: Sequence[CallSpec], *, redelivered: bool = False) -> bytes:
    """The task message that runs `specs` (its id is the first call's)."""
    return task_message(
        celery_app,
        task_name=run_calls_task.name,
        task_id=specs[0].call_id,
        args=[[spec.to_json() for spec in specs]],
        # The default is a repr of the whole specs: costly, and it holds the prompts.
        argsrepr=f"[calls {' '.join(spec.call_id for spec in specs)}]",
        queue=celery_app.conf.task_default_queue,
        redelivered=redelivered,
    )


async def calls_push(specs: Sequence[CallSpec], *, redelivered: bool = False) -> None:
    """Push `specs` in messages of up to MAX_CALLS_PER_MESSAGE, with their queued marks, in one round trip."""
    queue = celery_app.conf.task_default_queue
    messages = [
        calls_message(specs[start : start + MAX_CALLS_PER_MESSAGE], redelivered=redelivered)
        for start in range(0, len(specs), MAX_CALLS_PER_MESSAGE)
    ]
    marks: list[Command] = [
        ("SET", queued_key(spec.call_id), "1", "EX", settings.CALL_DEADLINE_SECONDS) for spec in specs
    ]
    await get_resp().pipeline([*marks, ("LPUSH", queue, *messages)])


async def _push(specs: list[CallSpec]) -> list[None]:
    await calls_push(specs)
    return [None] * len(specs)


_dispatch: Coalescer[CallSpec, None] = Coalescer(
    _push, linger=settings.DISPATCH_LINGER_MS / 1000, max_items=MAX_CALLS_PER_MESSAGE
)


async def call_enqueue(spec: CallSpec) -> None:
    """Hand `spec` to the workers; return once its task message is in the queue (or raise why not)."""
    await _dispatch.submit(spec)
