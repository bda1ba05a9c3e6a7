"""A call that shows no sign of life, seen from the web process that waits for it: lost, or only waiting?

A call's task message can be lost before any worker took it: Redis flushed,
or restarted without persistence. Nothing else would ever run it, and its
client would wait until the call's deadline. So while a call has published
nothing, its web process looks, every quiet interval past
SIGN_OF_LIFE_SECONDS, for a sign of it in Redis: its queued mark (still in
the queue, routing/calls/dispatch.py), its run lease (a worker runs it,
routing/calls/lease.py) or its stream. With none of them, twice a lease
renewal apart (a live run renews its lease, which a flush also removed),
the call is lost: it is pushed again, marked as redelivered so that the
worker checks it was not booked meanwhile (routing/calls/recovery.py), up
to MAX_PUSHES_AGAIN times; after that it is given up (CallLost), booked as
failed, and its terminal event published (call_give_up), so that whoever
reads its stream sees it end.

A run can also die mid-answer (its worker killed). The broker would hand
its message to another worker only once its visibility timeout has passed
(minutes), and the client would wait that long for the stream's end. So a
reader keeps watching on quiet intervals after the first event too, where
the stream no longer counts as a sign of life: with neither a queued mark
nor a run lease, twice a renewal apart, the run is dead and the call is
pushed again; the new run finds the earlier one's output and ends the call
as recovery does (booked with what it sent, its stream ended with
`worker_lost`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from billing.services import UsageBooking, spend_release, usage_record_new
from routing.calls.booking import figures_of, record_insert_now
from routing.calls.dispatch import calls_push
from routing.calls.events import Failed
from routing.calls.keys import queued_key, run_key, stream_key
from routing.calls.lease import renewal_period
from routing.calls.spec import CallSpec
from routing.calls.stream import CallPublisher
from switchyard.redis_clients import get_resp

logger = logging.getLogger(__name__)

MAX_PUSHES_AGAIN = 2
LOST = "lost"


class CallLost(Exception):
    """The call's task message was lost, and pushing it again did not bring it to life."""


class CallWatch:
    def __init__(self, spec: CallSpec, *, pushed_at: float | None = None) -> None:
        """`pushed_at` is when the call's message was pushed (time.monotonic()), now by default."""
        self.spec = spec
        self.pushed_at = time.monotonic() if pushed_at is None else pushed_at
        self.pushed_again = 0
        self._unseen_since: float | None = None

    async def check(self, *, answering: bool = False) -> None:
        """Call on each quiet interval; pushes a lost call (or a dead run's) again, or raises CallLost.

        `answering`: the reader has read the call's first events, so its stream shows only that it once ran.
        """
        now = time.monotonic()
        if now - self.pushed_at < settings.CALL_SIGN_OF_LIFE_SECONDS:
            return
        call_id = self.spec.call_id
        keys = [queued_key(call_id), run_key(call_id)]
        if not answering:
            keys.append(stream_key(call_id))
        signs = await get_resp().execute("EXISTS", *keys)
        if signs:
            self._unseen_since = None
            return
        if self._unseen_since is None:
            self._unseen_since = now
            return
        if now - self._unseen_since < renewal_period() + 1:
            return
        when = "mid-answer" if answering else "before a worker took it"
        if self.pushed_again >= MAX_PUSHES_AGAIN:
            raise CallLost(f"call {call_id} was lost {when}")
        self.pushed_again += 1
        logger.warning("call %s was lost %s; pushing it again", call_id, when)
        await calls_push([self.spec], redelivered=True)
        self.pushed_at = now
        self._unseen_since = None


async def call_give_up(spec: CallSpec, *, waited_ms: int) -> Failed | None:
    """End a call that was lost and never ran: booked as failed, and its terminal event published and returned.

    None if a worker booked it after all: its own end stands, on its stream.
    """
    record = usage_record_new(UsageBooking.never_ran(spec, LOST, latency_ms=waited_ms))
    message = "the call was lost before a worker took it (Switchyard's queue was reset); try again"
    terminal = Failed(figures_of(record), LOST, message, status=503)
    if not await sync_to_async(record_insert_now)(spec, record, terminal):
        return None
    publisher = CallPublisher(spec.call_id)
    await asyncio.gather(publisher.publish(terminal), spend_release([spec.call_id]))
    await publisher.booked()
    return terminal
