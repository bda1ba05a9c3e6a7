"""Running one call: walk the fallback chain, relay events, book the usage once.

`call_run` runs one call; the Celery task runs the calls of its message side
by side (`calls_run`). Its rules:

- Before the first token, a retryable failure (rate limited, overloaded,
  timeout, unavailable; context too long when a later model has a larger
  window) moves on to the next model. A bad request or a content filter ends
  the call: another model would refuse it too. An auth failure skips the
  other models of the same provider (same key) but not the chain.
- After the first token the model is kept: a failure then ends the stream
  with an error event, and is booked as such. Text that reached the client
  is never silently continued by another model.
- The usage record is written exactly once per call id, before the task
  is acknowledged: just after the terminal event for an API call, just
  before it for a playground call (_book_and_announce says why). A task the
  broker delivers twice (acks_late, a worker killed) waits while the first
  run's lease is alive; once the lease has lapsed the run is known dead: if
  it had published its terminal event, the call is booked from that event;
  if it had sent text, that run is booked and the stream ended with an
  error instead of starting the answer again; if it had inserted the
  record but died before its terminal event (a playground call books
  first), the event is published from the record, with its spend; if
  none of these, the call simply runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.dispatch import Signal

from billing import caps
from billing.models import UsageRecord
from billing.services import UsageBooking, usage_record_new, usage_records_insert
from fastpath.coalesce import Coalescer
from routing import tokens
from routing.calls import db_lane
from routing.calls.spec import CallSpec
from routing.calls.stream import TERMINAL, CallPublisher, lease_keeper
from routing.catalog import Catalog, CatalogModel, aget_catalog
from routing.providers.errors import ErrorKind, ProviderError
from routing.providers.registry import adapter_for
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from fastpath.resp import Command

# Sent by the worker once a call's record is inserted (the first time only);
# for a playground call that is before its terminal event is published, so
# that a receiver's durable write is visible to whoever reacts to the event.
# Arguments: spec (CallSpec), record (UsageRecord), text (the
# answer so far), error (a dict with kind and message, or None).
call_finished = Signal()

# Below this many output tokens left in a model's window, the call is
# treated as too long for it rather than sent with a useless budget.
MIN_OUTPUT_TOKENS = 16


@dataclass
class Attempt:
    model: str
    provider: str
    outcome: str  # "ok", an ErrorKind value, "skipped" or "cancelled"
    message: str = ""
    status_code: int | None = None
    retry_after: float | None = None
    elapsed_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


@dataclass
class AttemptResult:
    """What one model did. `error` is set on failure; `answered` once a token was relayed."""

    answered: bool = False
    cancelled: bool = False
    error: ProviderError | None = None
    finish: str = ""
    usage: Usage | None = None
    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    ttft_ms: int | None = None


async def calls_run(specs: list[CallSpec]) -> None:
    """Run the calls of one task message side by side, each to its end whatever the others do."""
    for outcome in await asyncio.gather(*(call_run(spec) for spec in specs), return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


async def call_run(spec: CallSpec) -> None:
    """Run one call on the call loop (routing/calls/worker_loop.py), from its claim to its terminal event."""
    publisher = CallPublisher(spec.call_id)
    give_up = time.monotonic() + settings.CALL_DEADLINE_SECONDS
    while True:
        claim = await publisher.claim_run()
        if claim.claimed:
            break
        # Another delivery of this call holds the lease: wait until it
        # finishes (its record appears) or dies (its lease lapses).
        if await db_lane.run(_record_of, spec.call_id) is not None or time.monotonic() > give_up:
            return
        await asyncio.sleep(1)
    async with lease_keeper.holding(spec.call_id):
        if not claim.earlier_output:
            await CallRunner(spec, publisher, await aget_catalog(claim.catalog_version)).run()
        elif (record := await db_lane.run(_record_of, spec.call_id)) is None:
            await _book_lost_run(spec, publisher)
        else:
            await _announce_booked_run(publisher, record)


def _record_of(call_id: str) -> UsageRecord | None:
    return UsageRecord.objects.filter(request_id=call_id).first()


def _figures(record: UsageRecord) -> dict[str, Any]:
    """What a call's terminal event tells of it, whatever its end: the figures of its record."""
    return {
        "model": record.model,
        "provider": record.provider,
        "route": record.route,
        "attempts": record.attempts,
        "usage": {"input": record.input_tokens, "output": record.output_tokens, "estimated": record.tokens_estimated},
        "cost": None if record.cost_usd is None else str(record.cost_usd),
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
    }


class CallRunner:
    def __init__(self, spec: CallSpec, publisher: CallPublisher, catalog: Catalog) -> None:
        self.spec = spec
        self.publisher = publisher
        self.catalog = catalog
        self.attempts: list[Attempt] = [
            Attempt(model=s["model"], provider=s.get("provider", ""), outcome="skipped", message=s["reason"])
            for s in spec.skipped
        ]
        self.started = time.monotonic()
        self.deadline = self.started + settings.CALL_DEADLINE_SECONDS

    async def run(self) -> None:
        failed_providers: set[str] = set()
        last_error: ProviderError | None = None
        for model_id in self.spec.chain:
            model = self.catalog.models.get(model_id)
            if model is None or not model.usable:
                self.attempts.append(Attempt(model_id, "", "skipped", "disabled"))
                continue
            if model.provider_name in failed_providers:
                self.attempts.append(Attempt(model_id, model.provider_name, "skipped", "provider refused our key"))
                continue
            if time.monotonic() >= self.deadline:
                last_error = _deadline_error()
                break
            request = await self._fit(model)
            if request is None:
                error = ProviderError(ErrorKind.CONTEXT_TOO_LONG, f"the prompt does not fit {model_id}'s window")
                self.attempts.append(Attempt(model_id, model.provider_name, "skipped", error.message))
                last_error = error
                continue
            attempt_started = time.monotonic()
            result = await self._attempt(model, request)
            elapsed = int((time.monotonic() - attempt_started) * 1000)
            if result.cancelled:
                self.attempts.append(Attempt(model_id, model.provider_name, "cancelled", elapsed_ms=elapsed))
                await self._book(model, result, status="cancelled")
                return
            if result.error is None:
                self.attempts.append(Attempt(model_id, model.provider_name, "ok", elapsed_ms=elapsed))
                await self._book(model, result, status="ok")
                return
            error = result.error
            self.attempts.append(
                Attempt(
                    model_id,
                    model.provider_name,
                    error.kind.value,
                    error.message,
                    error.status_code,
                    error.retry_after,
                    elapsed,
                )
            )
            if result.answered:
                await self._book(model, result, status="error")
                return
            last_error = error
            if error.kind is ErrorKind.AUTH:
                failed_providers.add(model.provider_name)
            elif not error.retryable:
                break
        await self._fail(last_error or ProviderError(ErrorKind.UNAVAILABLE, "no model of the chain is available"))

    async def _fit(self, model: CatalogModel) -> ChatRequest | None:
        """The request as this model can take it: max_tokens within its limits, or None if it cannot fit."""
        request = self.spec.request
        wanted = request.max_tokens or model.max_output_tokens
        prompt_tokens = tokens.request_tokens_upper_bound(request)
        if prompt_tokens + min(wanted, model.max_output_tokens) > model.context_window:
            prompt_tokens = await tokens.aestimate_request_tokens(request)
        room = model.context_window - prompt_tokens
        if room < MIN_OUTPUT_TOKENS:
            return None
        max_tokens = min(wanted, model.max_output_tokens, room)
        return dataclasses.replace(request, max_tokens=max_tokens, seed=request.seed or self.spec.call_id)

    async def _attempt(self, model: CatalogModel, request: ChatRequest) -> AttemptResult:
        result = AttemptResult()
        events = adapter_for(model.config()).stream(request)
        try:
            # The deadline bounds the whole stream, not only each wait for a chunk.
            async with asyncio.timeout(self.deadline - time.monotonic()):
                await self._relay(model, events, result)
        except TimeoutError:
            result.error = _deadline_error()
        finally:
            await events.aclose()
        if result.cancelled or result.usage is None:
            output_tokens = await tokens.aestimate_text_tokens("".join(result.text))
            for call in result.tool_calls.values():
                output_tokens += await tokens.aestimate_text_tokens(call["arguments"])
            result.usage = Usage(
                input_tokens=await tokens.aestimate_request_tokens(request),
                output_tokens=output_tokens,
                estimated=True,
            )
        return result

    async def _relay(self, model: CatalogModel, events: AsyncIterator[Event], result: AttemptResult) -> None:
        """Record the model's events in `result` and publish them as they come, until the end or a cancel."""
        publish = self.spec.publish_deltas
        async for event in events:
            if await self.publisher.cancelled():
                result.cancelled = True
                break
            first = isinstance(event, TextDelta | ToolCallDelta) and not result.answered
            if first:
                result.answered = True
                result.ttft_ms = int((time.monotonic() - self.started) * 1000)
                if publish:
                    start = {
                        "model": model.public_id,
                        "provider": model.provider_name,
                        "attempts": [a.as_json() for a in self.attempts],
                    }
                    # The first text goes out with the start, in the same round trip.
                    first_text = event.text if isinstance(event, TextDelta) else ""
                    await self.publisher.publish("start", start, text=first_text)
            if isinstance(event, TextDelta):
                result.text.append(event.text)
                if publish and not first:
                    await self.publisher.publish_text(event.text)
            elif isinstance(event, ToolCallDelta):
                call = result.tool_calls.setdefault(event.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = event.id or call["id"]
                call["name"] = event.name or call["name"]
                call["arguments"] += event.arguments
                if publish:
                    await self.publisher.publish(
                        "tool", {"i": event.index, "id": event.id, "n": event.name, "a": event.arguments}
                    )
            elif isinstance(event, Usage):
                result.usage = event
            elif isinstance(event, Finish):
                result.finish = event.reason.value
            elif isinstance(event, StreamError):
                result.error = event.error

    def _booking(self, model: CatalogModel | None, result: AttemptResult | None, status: str) -> UsageBooking:
        usage = result.usage if result else None
        return UsageBooking(
            spec=self.spec,
            model=model,
            status=status,
            attempts=[a.as_json() for a in self.attempts],
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            tokens_estimated=usage.estimated if usage else False,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            ttft_ms=result.ttft_ms if result else None,
            error_kind=result.error.kind.value if result and result.error else "",
            finish_reason=result.finish if result else "",
        )

    async def _book(self, model: CatalogModel, result: AttemptResult, *, status: str) -> None:
        booking = self._booking(model, result, status)
        error = None
        if status == "error" and result.error is not None:
            error = {"kind": result.error.kind.value, "message": result.error.message}
        elif status == "cancelled":
            error = {"kind": "cancelled", "message": "stopped before the end"}
        record = usage_record_new(booking)
        summary = _figures(record)
        if status == "ok":
            summary["finish"] = result.finish or "stop"
            if not self.spec.publish_deltas:
                summary["content"] = "".join(result.text)
                summary["tool_calls"] = [result.tool_calls[i] for i in sorted(result.tool_calls)]
            event = ("done", summary)
        elif status == "error" and result.error is not None:
            event = ("error", {**summary, **_error_data(result.error), "after_output": True})
        else:
            event = ("error", {**summary, "kind": "cancelled", "message": "cancelled", "status": 499})
        await _book_and_announce(self.publisher, self.spec, record, event, "".join(result.text), error)

    async def _fail(self, error: ProviderError) -> None:
        booking = self._booking(None, None, "error")
        booking = dataclasses.replace(booking, error_kind=error.kind.value)
        event_data = {"attempts": booking.attempts, "route": self.spec.route, "latency_ms": booking.latency_ms}
        event = ("error", {**event_data, **_error_data(error, all_failed=True)})
        error_event = {"kind": error.kind.value, "message": error.message}
        await _book_and_announce(self.publisher, self.spec, usage_record_new(booking), event, "", error_event)


async def _book_and_announce(
    publisher: CallPublisher,
    spec: CallSpec,
    record: UsageRecord,
    event: tuple[str, dict[str, Any]],
    text: str,
    error: dict[str, str] | None,
) -> None:
    """Insert the call's usage record and publish its terminal `event`, in the order its reader needs.

    An API client needs only the event, which carries the call's figures:
    it goes out first, and the record is inserted right after, before the
    task is acknowledged. That takes the insert (1-2 ms here, most of it
    waiting for the database lane) off every call's latency. A run that
    dies in between is booked from its event when the task is redelivered
    (_book_lost_run). The playground's page reacts to the event by reading
    what the call_finished receivers wrote: there the record comes first,
    and a run that dies in between is announced from its record when the
    task is redelivered (_announce_booked_run).
    The spend counters' increment travels with the event either way; it is
    taken back if the insert finds the call booked already.
    """
    kind, data = event
    spend: list[Command] = [command] if (command := caps.spend_command(record)) else []
    booking = _Booked(spec, record, text, error)
    if spec.source == UsageRecord.Source.PLAYGROUND:
        inserted = await _bookings.submit(booking)
        await publisher.publish(kind, data, after=spend if inserted else ())
        return
    await publisher.publish(kind, data, after=spend)
    if not await _bookings.submit(booking) and spend:
        await publisher.redis.execute(*caps.spend_command(record, undo=True))


@dataclass(frozen=True, slots=True)
class _Booked:
    spec: CallSpec
    record: UsageRecord
    text: str
    error: dict[str, str] | None


def _insert(bookings: list[_Booked]) -> list[bool]:
    """Insert the records and tell call_finished's receivers; False for a call booked already."""
    inserted = usage_records_insert([booking.record for booking in bookings])
    for booking, new in zip(bookings, inserted, strict=True):
        if new:
            call_finished.send(
                CallRunner, spec=booking.spec, record=booking.record, text=booking.text, error=booking.error
            )
    return inserted


async def _insert_on_lane(bookings: list[_Booked]) -> list[bool]:
    return await db_lane.run(_insert, bookings)


# The calls that end while a booking transaction runs are booked together in the next.
_bookings: Coalescer[_Booked, bool] = Coalescer(_insert_on_lane)


def _deadline_error() -> ProviderError:
    return ProviderError(
        ErrorKind.TIMEOUT, f"the call ran out of time (its deadline is {settings.CALL_DEADLINE_SECONDS} s)"
    )


def _error_data(error: ProviderError, *, all_failed: bool = False) -> dict[str, Any]:
    return {
        "kind": error.kind.value,
        "message": error.message,
        "status": client_status_for(error, all_failed=all_failed),
        "retry_after": error.retry_after,
    }


def client_status_for(error: ProviderError, *, all_failed: bool) -> int:
    """The HTTP status an OpenAI client expects for a call that ended with `error`."""
    if error.kind in (ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTERED, ErrorKind.CONTEXT_TOO_LONG):
        return 400
    if error.kind in (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED):
        return 503
    return 502


async def _book_lost_run(spec: CallSpec, publisher: CallPublisher) -> None:
    """An earlier run of this call died after publishing events, before its record was inserted.

    If it published the terminal event (an API call announces before it
    books), that event holds the call's figures, and the spend went with
    it: book those. Otherwise it died mid-answer: book the text it sent,
    with estimated tokens, and end the stream with an error.
    """
    text: list[str] = []
    model_id = ""
    terminal: tuple[str, dict[str, Any]] | None = None
    for kind, data in await publisher.events_so_far():
        if kind == "start":
            model_id = data["model"]
        elif kind == "delta":
            text.append(data["c"])
        elif kind == "tool":
            text.append((data.get("n") or "") + data.get("a", ""))
        elif kind in TERMINAL:
            terminal = (kind, data)
    catalog = await aget_catalog()
    if terminal is not None:
        kind, data = terminal
        record = usage_record_new(_booking_from_terminal(spec, catalog, kind, data))
        error = None if kind == "done" else {"kind": data["kind"], "message": data["message"]}
        await _bookings.submit(_Booked(spec, record, "".join(text) or data.get("content", ""), error))
        return
    attempts = [{"model": model_id, "outcome": "worker_lost", "message": "the worker running this call stopped"}]
    booking = UsageBooking(
        spec=spec,
        model=catalog.models.get(model_id),
        status="error",
        attempts=attempts,
        input_tokens=await tokens.aestimate_request_tokens(spec.request),
        output_tokens=await tokens.aestimate_text_tokens("".join(text)),
        tokens_estimated=True,
        latency_ms=0,
        ttft_ms=None,
        error_kind="worker_lost",
        finish_reason="",
    )
    event = {
        "kind": "worker_lost",
        "message": "the worker running this call stopped; the answer is incomplete",
        "status": 502,
        "model": model_id,
        "attempts": attempts,
        # So that a recovery that dies in turn is booked from this event alike.
        "usage": {"input": booking.input_tokens, "output": booking.output_tokens, "estimated": True},
        "after_output": True,
    }
    error = {"kind": "worker_lost", "message": "the worker running this call stopped"}
    await _book_and_announce(publisher, spec, usage_record_new(booking), ("error", event), "".join(text), error)


async def _announce_booked_run(publisher: CallPublisher, record: UsageRecord) -> None:
    """An earlier run inserted the call's record; publish its terminal event if that run died before it did.

    A playground call is booked before it is announced (_book_and_announce),
    and its page waits on the stream for the terminal event. The spend
    increment travels with that event, in the same write and before it:
    an event on the stream means the spend was counted; none means neither.
    """
    if any(kind in TERMINAL for kind, _ in await publisher.events_so_far()):
        return
    kind, data = "error", _figures(record)
    if record.status == UsageRecord.Status.OK:
        kind, data["finish"] = "done", record.finish_reason or "stop"
    elif record.status == UsageRecord.Status.CANCELLED:
        data |= {"kind": "cancelled", "message": "cancelled", "status": 499}
    else:
        said = [attempt["message"] for attempt in record.attempts if attempt.get("message")]
        data |= {"kind": record.error_kind, "message": said[-1] if said else "the call failed", "status": 502}
    spend = caps.spend_command(record)
    await publisher.publish(kind, data, after=[spend] if spend else ())


def _booking_from_terminal(spec: CallSpec, catalog: Catalog, kind: str, data: dict[str, Any]) -> UsageBooking:
    """The booking that a call's published terminal event (done or error, see CallRunner._book) stands for."""
    usage = data.get("usage", {})
    status = "ok" if kind == "done" else "cancelled" if data["kind"] == "cancelled" else "error"
    return UsageBooking(
        spec=spec,
        model=catalog.models.get(data.get("model", "")),
        status=status,
        attempts=data["attempts"],
        input_tokens=usage.get("input", 0),
        output_tokens=usage.get("output", 0),
        tokens_estimated=usage.get("estimated", False),
        latency_ms=data.get("latency_ms", 0),
        ttft_ms=data.get("ttft_ms"),
        error_kind=data["kind"] if status == "error" else "",
        finish_reason=data.get("finish", ""),
    )
