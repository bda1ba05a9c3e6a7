"""The end of a call: its terminal event published with its spend counted, its usage record inserted once.

The record is written exactly once per call id, before the task is
acknowledged. For an API call the terminal event goes out first and the
record right after: the client needs only the event, which carries the
call's figures, and does not wait for the database. The playground's page
reacts to the event by reading what the call_finished receivers wrote, so
there the record comes first. A run that dies in between is recovered from
the event or from the record when its task is delivered again
(routing/calls/recovery.py).

Billing counts a call's spend as its terminal event goes out, in the same
write to Redis (call_announce), so that a client never gets an answer
whose cost its next call's cap check does not see; and an event on the
stream means its spend was counted. When that cannot be told (a call
booked already, a stream gone) billing recounts the call's subjects from
the database instead. So after any fault, once the call is booked, the
counters equal the sum of the records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.dispatch import Signal

from billing.models import UsageRecord
from billing.services import UsageBooking, spend_count, spend_recount, usage_records_insert
from fastpath.coalesce import Coalescer
from routing.calls import db_lane
from routing.calls.events import Done, Figures, Terminal
from routing.calls.spec import CallSpec, spec_extra_cost
from routing.calls.stream import CallPublisher
from routing.catalog import Catalog

logger = logging.getLogger(__name__)

# Sent by the worker in the transaction that inserts a call's record (the
# first time only); for a playground call that is before its terminal event
# is published, so that a receiver's write is visible to whoever reacts to
# the event. Arguments: spec (CallSpec), record (UsageRecord), text (the
# answer), error (a dict with kind and message, or None).
call_finished = Signal()

# Waits between tries of an insert that the database refused for a while (locked, unreachable).
RETRY_DELAYS = (0.2, 0.5, 1, 2, 5, 10)


class BookingFailed(Exception):
    """The database refused a call's record for longer than BOOKING_RETRY_SECONDS: the task must not be acknowledged."""


def figures_of(record: UsageRecord) -> Figures:
    return Figures(
        model=record.model,
        provider=record.provider,
        route=record.route,
        attempts=tuple(record.attempts),
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        tokens_estimated=record.tokens_estimated,
        cached_input_tokens=record.cached_input_tokens,
        cache_write_tokens=record.cache_write_tokens,
        reasoning_tokens=record.reasoning_tokens,
        cost=None if record.cost_usd is None else str(record.cost_usd),
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        cache_hit=record.cache_hit,
        cache_saving=None if record.cache_saving_usd is None else str(record.cache_saving_usd),
    )


async def call_book(
    publisher: CallPublisher, spec: CallSpec, record: UsageRecord, terminal: Terminal, text: str
) -> None:
    """Insert the call's record and announce its `terminal` event, in the order its reader needs."""
    if spec.source == UsageRecord.Source.PLAYGROUND:
        inserted = await record_insert(spec, record, terminal, text)
        await call_announce(publisher, record, terminal)
    else:
        await call_announce(publisher, record, terminal)
        inserted = await record_insert(spec, record, terminal, text)
    await call_booked(publisher, record, counted_once=inserted)


async def call_announce(publisher: CallPublisher, record: UsageRecord, terminal: Terminal) -> None:
    """Publish the terminal event, and have billing count the call's spend in the same write to Redis."""
    await asyncio.gather(spend_count([record]), publisher.publish(terminal))


async def call_booked(publisher: CallPublisher, record: UsageRecord, *, counted_once: bool) -> None:
    """The call's record is in the database: free its stream, and recount its spend unless it was counted once."""
    if counted_once:
        await publisher.booked()
    else:
        await asyncio.gather(publisher.booked(), spend_recount(record))


async def record_insert(spec: CallSpec, record: UsageRecord, terminal: Terminal, text: str) -> bool:
    """Insert the call's record and tell call_finished's receivers; False if the call is booked already.

    Raises BookingFailed when the database refused it for too long.
    """
    error = None if isinstance(terminal, Done) else {"kind": terminal.error_kind, "message": terminal.message}
    return await _bookings.submit(_Booked(spec, record, text, error))


@dataclass(frozen=True, slots=True)
class _Booked:
    spec: CallSpec
    record: UsageRecord
    text: str
    error: dict[str, str] | None


def record_insert_now(spec: CallSpec, record: UsageRecord, terminal: Terminal) -> bool:
    """record_insert for a process without the worker's database lane (the web giving up a lost call)."""
    error = None if isinstance(terminal, Done) else {"kind": terminal.error_kind, "message": terminal.message}
    return _insert([_Booked(spec, record, "", error)])[0]


def _insert(bookings: list[_Booked]) -> list[bool]:
    """Insert the records and tell call_finished's receivers, in one transaction; False for a call booked already."""
    with transaction.atomic():
        inserted = usage_records_insert([booking.record for booking in bookings])
        for booking, new in zip(bookings, inserted, strict=True):
            if new:
                call_finished.send(
                    _Booked, spec=booking.spec, record=booking.record, text=booking.text, error=booking.error
                )
    return inserted


async def _insert_on_lane(bookings: list[_Booked]) -> list[bool]:
    """_insert on the database lane, tried again while the database refuses it (locked, restarting)."""
    give_up = time.monotonic() + settings.BOOKING_RETRY_SECONDS
    delays = iter(RETRY_DELAYS)
    delay = 0.0
    while True:
        try:
            return await db_lane.run(_insert, bookings)
        except (OperationalError, InterfaceError) as exc:
            delay = next(delays, delay)
            if time.monotonic() + delay > give_up:
                ids = ", ".join(booking.record.request_id for booking in bookings)
                raise BookingFailed(f"could not book {ids}: {exc}") from exc
            logger.warning("booking %d calls failed (%s); trying again in %g s", len(bookings), exc, delay)
            await asyncio.sleep(delay)


# The calls that end while a booking transaction runs are booked together in the next.
_bookings: Coalescer[_Booked, bool] = Coalescer(_insert_on_lane)


def booking_from_terminal(spec: CallSpec, catalog: Catalog, terminal: Terminal) -> UsageBooking:
    """The booking that a call's published terminal event stands for (its figures are its record's)."""
    figures = terminal.figures
    if isinstance(terminal, Done):
        status, error_kind, finish = "ok", "", terminal.finish
    else:
        status = "cancelled" if terminal.cancelled else "error"
        error_kind, finish = ("" if terminal.cancelled else terminal.error_kind), ""
    return UsageBooking(
        spec=spec,
        model=catalog.models.get(figures.model),
        status=status,
        attempts=list(figures.attempts),
        input_tokens=figures.input_tokens,
        output_tokens=figures.output_tokens,
        tokens_estimated=figures.tokens_estimated,
        latency_ms=figures.latency_ms,
        ttft_ms=figures.ttft_ms,
        error_kind=error_kind,
        finish_reason=finish,
        cached_input_tokens=figures.cached_input_tokens,
        cache_write_tokens=figures.cache_write_tokens,
        reasoning_tokens=figures.reasoning_tokens,
        # What the call paid before it ran (a classifier); a cascade's escalated answers are not in the event.
        extra_cost=spec_extra_cost(spec),
        cache_hit=figures.cache_hit,
        cache_saving=None if figures.cache_saving is None else Decimal(figures.cache_saving),
    )
