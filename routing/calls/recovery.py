"""Running the calls of a task message, once each, whether the message is delivered for the first time or again.

A message is delivered again when its worker died before acknowledging it,
when it outlived the broker's visibility timeout while still running, or
when the web pushed it again because it was lost (routing/calls/watchdog.py).
A call is sent to its provider again only when nothing of it had reached
its client and it was never booked; it is booked exactly once:

- another run holds the call's lease (routing/calls/lease.py): it is alive;
  wait until its record appears or its lease lapses;
- the call's record is in the database: it ended; announce its terminal
  event if its run died before doing so (a playground call books first);
- no record, but an earlier run published events: if its terminal event is
  among them (an API call announces before it books), book from that
  event, whose spend was counted with it; otherwise it died mid-answer:
  book what it sent, with estimated tokens, and end the stream with an
  error instead of starting again;
- neither: the call never ran, or died before anything of it was sent. Run
  it; if its reservation against its caller's caps lapsed meanwhile, only
  once it is reserved again.

A first delivery skips the database read: nothing can have booked it yet.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from django.conf import settings

from billing.caps.check import CapsUnavailable, cap_check, caps_reserve
from billing.models import UsageRecord
from billing.services import UsageBooking, usage_record_new
from routing import tokens
from routing.calls import db_lane
from routing.calls.booking import (
    booking_from_terminal,
    call_announce,
    call_book,
    call_booked,
    figures_of,
    record_insert,
)
from routing.calls.events import (
    CANCELLED_STATUS,
    CallEvent,
    Done,
    Failed,
    Started,
    Terminal,
    Text,
    ToolPiece,
)
from routing.calls.lease import lease_keeper, run_claim
from routing.calls.runner import CallRunner
from routing.calls.spec import CallSpec
from routing.calls.stream import CallPublisher
from routing.catalog import aget_catalog

WORKER_LOST = "worker_lost"
QUOTA = "insufficient_quota"


async def calls_run(specs: list[CallSpec], *, redelivered: bool = False) -> None:
    """Run the calls of one task message side by side, each to its end whatever the others do."""
    outcomes = await asyncio.gather(
        *(call_run(spec, redelivered=redelivered) for spec in specs), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def call_run(spec: CallSpec, *, redelivered: bool = False) -> None:
    """Run one call on the worker's loop (routing/calls/worker_loop.py), from its claim to its booking."""
    publisher = CallPublisher(spec.call_id)
    give_up = time.monotonic() + settings.CALL_DEADLINE_SECONDS
    reserved = spec.reserved_units > 0
    while not (claim := await run_claim(spec.call_id, reserved=reserved)).claimed:
        # Another delivery of this call holds the lease: wait until it
        # finishes (its record appears) or dies (its lease lapses).
        if await db_lane.run(_record_of, spec.call_id) is not None or time.monotonic() > give_up:
            return
        await asyncio.sleep(1)
    async with lease_keeper.holding(spec.call_id, reserved=reserved):
        record = None
        if redelivered or claim.earlier_output:
            record = await db_lane.run(_record_of, spec.call_id)
        if record is not None:
            await _announce_booked_run(publisher, record)
        elif claim.earlier_output:
            await _book_lost_run(spec, publisher)
        elif reserved and not claim.reservation_held and (why := await _reserve_again(spec)) is not None:
            await _book_refused(spec, publisher, why)
        else:
            await CallRunner(spec, publisher, await aget_catalog(claim.catalog_version)).run()


async def _reserve_again(spec: CallSpec) -> str | None:
    """Reserve a call whose reservation lapsed before it ran (a long wait, a dead worker); why not, if refused."""
    try:
        caps = await cap_check(user_id=spec.user_id, team_id=spec.team_id, api_key_id=spec.api_key_id)
        caps = await caps_reserve(caps, [(spec.call_id, spec.reserved_units)])
    except CapsUnavailable as exc:
        return str(exc)
    return None if caps.block is None else caps.block.message


async def _book_refused(spec: CallSpec, publisher: CallPublisher, why: str) -> None:
    """End a call that its caps no longer have room for, before it reached any provider."""
    record = usage_record_new(UsageBooking.never_ran(spec, QUOTA))
    message = f"The call's reservation against its spend caps lapsed before it ran, and could not be made again: {why}"
    await call_book(publisher, spec, record, Failed(figures_of(record), QUOTA, message, status=429), "")


def _record_of(call_id: str) -> UsageRecord | None:
    return UsageRecord.objects.filter(request_id=call_id).first()


@dataclass
class _Transcript:
    """What an earlier run published: the model that answered, the text sent, and its end."""

    model: str = ""
    text: list[str] = field(default_factory=list)
    terminal: Terminal | None = None

    @classmethod
    def of(cls, events: list[CallEvent]) -> _Transcript:
        transcript = cls()
        for event in events:
            if isinstance(event, Started):
                transcript.model = event.model
            elif isinstance(event, Text):
                transcript.text.append(event.text)
            elif isinstance(event, ToolPiece):
                transcript.text.append(event.name + event.arguments)
            elif isinstance(event, Done | Failed):
                transcript.terminal = event
        return transcript


async def _book_lost_run(spec: CallSpec, publisher: CallPublisher) -> None:
    """An earlier run of this call died after publishing events, before its record was inserted."""
    transcript = _Transcript.of(await publisher.events_so_far())
    text = "".join(transcript.text)
    catalog = await aget_catalog()
    if transcript.terminal is not None:
        terminal = transcript.terminal
        record = usage_record_new(booking_from_terminal(spec, catalog, terminal))
        content = terminal.content if isinstance(terminal, Done) else None
        inserted = await record_insert(spec, record, terminal, text or content or "")
        await call_booked(publisher, record, counted_once=inserted)
        return
    attempts = ({"model": transcript.model, "outcome": WORKER_LOST, "message": "the worker running this call stopped"},)
    booking = UsageBooking(
        spec=spec,
        model=catalog.models.get(transcript.model),
        status="error",
        attempts=list(attempts),
        input_tokens=await tokens.aestimate_request_tokens(spec.request),
        output_tokens=await tokens.aestimate_text_tokens(text),
        tokens_estimated=True,
        latency_ms=0,
        ttft_ms=None,
        error_kind=WORKER_LOST,
        finish_reason="",
    )
    record = usage_record_new(booking)
    message = "the worker running this call stopped; the answer is incomplete"
    await call_book(publisher, spec, record, Failed(figures_of(record), WORKER_LOST, message, after_output=True), text)


async def _announce_booked_run(publisher: CallPublisher, record: UsageRecord) -> None:
    """An earlier run booked the call; announce its end if that run died before doing so.

    A playground call is booked before it is announced (routing/calls/booking.py),
    and its page waits on the stream for the terminal event. A terminal
    event on the stream was counted with it. A stream already freed (the
    call was booked long ago) tells nothing: the call's spend is recounted.
    """
    events = await publisher.events_so_far()
    if any(isinstance(event, Done | Failed) for event in events):
        return
    terminal = _terminal_of(record)
    if events:
        await call_announce(publisher, record, terminal)
        await call_booked(publisher, record, counted_once=True)
    else:
        await publisher.publish(terminal)
        await call_booked(publisher, record, counted_once=False)


def _terminal_of(record: UsageRecord) -> Terminal:
    figures = figures_of(record)
    if record.status == UsageRecord.Status.OK:
        return Done(figures, record.finish_reason or "stop")
    if record.status == UsageRecord.Status.CANCELLED:
        return Failed(figures, "cancelled", "cancelled", CANCELLED_STATUS)
    said = [attempt["message"] for attempt in record.attempts if attempt.get("message")]
    return Failed(figures, record.error_kind, said[-1] if said else "the call failed")
