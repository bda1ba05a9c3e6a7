"""Running one call: walk its fallback chain, publish its events, and hand its end to booking.

The rules of the chain:

- Before the first token, a retryable failure (rate limited, overloaded,
  timeout, unavailable; context too long when a later model has a larger
  window) moves on to the next model. A bad request or a content filter ends
  the call: another model would refuse it too. An auth failure skips the
  other models of the same provider (same key) but not the chain.
- After the first token the model is kept: a failure then ends the stream
  with an error event, and is booked as such. Text that reached the client
  is never silently continued by another model.
- A model whose circuit is open (routing/resilience/circuits.py) is not
  called: it is skipped as after a retryable failure, and the trace says
  until when. Every attempt's outcome is counted by its circuits.
- A call that allows waiting (its `circuit_wait`) waits for the circuit of
  its chain's last model, when it would let the call through within that
  wait and the deadline, rather than fail at once: with nothing left to
  fall back to, a short wait beats a 503.
- A route may try a model again after such a failure before moving on
  (routing/resilience/retries.py): with backoff, within the deadline, and
  never once text has reached the client. Each try is an attempt.
- A cascade (routing/strategies/cascade.py) holds each answer but the last
  model's until it ended and passed the route's checks (answer_checks.py):
  then it is sent; else it is escalated, booked with the call (its cost
  added), and the next model answers. Until an answer is sent nothing has
  reached the client, so a held answer's failure falls back like any. If
  every model after an escalated answer fails, the last escalated answer is
  sent after all: an answer that failed a check beats no answer.
- A call that uses the response cache (routing/resilience/cache.py) is
  first looked up there, waiting for an identical call in flight: a hit is
  replayed (a stream or a body, as asked) and booked at no cost with its
  saving (routing/calls/cache_hits.py; a hit the web found first never
  reaches a worker). An answer that ended well is stored; an error, a cancelled or cut
  answer, or one a cascade sent only because nothing else answered, never.
- Whatever fails in the worker itself (a bug, a request an adapter cannot
  take), the call still ends with a terminal error event and a record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from billing.models import UsageRecord
from billing.services import UsageBooking, price_of, tokens_cost, usage_record_new
from routing import tokens
from routing.calls.answer_checks import answer_failure
from routing.calls.attempts import Attempt, skipped_attempts
from routing.calls.booking import call_book, figures_of
from routing.calls.cache_hits import cache_hit_attempts, cache_hit_booking, cache_hit_events
from routing.calls.cascade_outcomes import cascade_learns, cascade_outcome_keep
from routing.calls.events import CANCELLED_STATUS, Done, Failed, Figures, Started, Terminal, ToolPiece
from routing.calls.spec import CallSpec, spec_extra_cost
from routing.calls.stream import CallPublisher
from routing.catalog import Catalog, CatalogModel
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
from routing.resilience.cache import CachedAnswer, CacheFlight, CacheUse
from routing.resilience.circuits import CircuitOpen, Passage, circuit_pass
from routing.resilience.retries import RetryPolicy

logger = logging.getLogger(__name__)

# Below this many output tokens left in a model's window, the call is
# treated as too long for it rather than sent with a useless budget.
MIN_OUTPUT_TOKENS = 16
INTERNAL_ERROR = "internal_error"
CIRCUIT_WAIT_MARGIN_SECONDS = 0.05
# The outcome of a cascade's answer that failed a check and was not sent.
ESCALATED = "escalated"
# How a complete answer ends; content_filter's is cut by the provider.
CACHEABLE_FINISHES = frozenset({"stop", "length", "tool_calls"})


@dataclass
class AttemptResult:
    """What one model did. `error` is set on failure; `answered` once a token was relayed."""

    answered: bool = False
    cancelled: bool = False
    error: ProviderError | None = None
    finish: str = ""
    usage: Usage | None = None
    # A token arrived; `answered` is whether it reached the client (a cascade holds answers back).
    produced: bool = False
    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    ttft_ms: int | None = None


class CallRunner:
    def __init__(self, spec: CallSpec, publisher: CallPublisher, catalog: Catalog) -> None:
        self.spec = spec
        self.publisher = publisher
        self.catalog = catalog
        self.attempts: list[Attempt] = skipped_attempts(spec)
        self.started = time.monotonic()
        self.deadline = self.started + settings.CALL_DEADLINE_SECONDS
        self.circuit_wait_left = spec.circuit_wait
        # The model being tried and what it did so far, for a failure of the worker's own.
        self._current: tuple[CatalogModel, AttemptResult] | None = None
        self._ended = False
        # A cascade's answer that ended and waits for its checks, then those that failed them.
        self._held: tuple[CatalogModel, AttemptResult, int] | None = None
        self._escalated: list[tuple[CatalogModel, AttemptResult, Decimal]] = []
        self.cache = CacheFlight(CacheUse(spec.cache_key, spec.cache_ttl), spec.call_id) if spec.cache_key else None
        self._cacheable = True

    async def run(self) -> None:
        """Run the call to its terminal event and record; an exception of the worker's own ends it as an error."""
        try:
            if self.cache is not None and (cached := await self.cache.answer(deadline=self.deadline)) is not None:
                await self._replay(cached)
                return
            await self._walk_chain()
        except Exception as exc:
            if self._ended:
                raise
            logger.exception("call %s failed in the worker", self.spec.call_id)
            await self._fail_internally(exc)
        finally:
            if self.cache is not None:
                await self.cache.release()

    async def _replay(self, cached: CachedAnswer) -> None:
        """Answer from the cache as the model answered then, and book the call at no cost with its saving."""
        self.attempts = cache_hit_attempts(self.spec, cached)
        elapsed = int((time.monotonic() - self.started) * 1000)
        record = usage_record_new(cache_hit_booking(self.spec, self.catalog, cached, self.attempts, elapsed))
        *answer, done = cache_hit_events(self.spec, cached, self.attempts, figures_of(record))
        for event in answer:
            await self.publisher.publish(event)
        assert isinstance(done, Done)
        await self._end(record, done, cached.text)

    async def _keep_in_cache(self, model: CatalogModel, result: AttemptResult) -> None:
        """Store an answer that ended well, whole, for the identical calls to come."""
        finish = result.finish or "stop"
        if self.cache is None or not self._cacheable or finish not in CACHEABLE_FINISHES:
            return
        usage = result.usage or Usage(0, 0, estimated=True)
        answer = CachedAnswer(
            model=model.public_id,
            provider=model.provider_name,
            text="".join(result.text),
            finish=finish,
            tool_calls=tuple(result.tool_calls[i] for i in sorted(result.tool_calls)),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            tokens_estimated=usage.estimated,
        )
        await self.cache.store(answer)

    async def _walk_chain(self) -> None:
        failed_providers: set[str] = set()
        last_error: ProviderError | None = None
        route = self.catalog.routes.get(self.spec.route)
        retries = RetryPolicy(route.retry_attempts, route.retry_base_delay_seconds) if route else RetryPolicy()
        for position, model_id in enumerate(self.spec.chain):
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
            last = position == len(self.spec.chain) - 1
            last_error = await self._try_model(
                model, request, retries, hold=bool(self.spec.checks) and not last, last=last
            )
            if last_error is None:
                if self._held is None:
                    return
                if await self._passed_or_escalated(request):
                    return
                continue
            if last_error.kind is ErrorKind.AUTH:
                failed_providers.add(model.provider_name)
            elif not last_error.retryable:
                break
        if self._escalated:
            await self._send_escalated()
            return
        await self._fail(last_error or ProviderError(ErrorKind.UNAVAILABLE, "no model of the chain is available"))

    async def _passed_or_escalated(self, request: ChatRequest) -> bool:
        """Send the held answer if it passes the cascade's checks (True); else escalate it (False)."""
        assert self._held is not None
        (model, result, elapsed), self._held = self._held, None
        failure = (
            "" if result.tool_calls else answer_failure(request, "".join(result.text), result.finish, self.spec.checks)
        )
        if not failure:
            await self._send(model, result)
            return True
        usage = result.usage or Usage(0, 0, estimated=True)
        price = price_of(model, self.spec.created_at)
        cost = (
            tokens_cost(
                price,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            )
            if price is not None
            else None
        )
        self._escalated.append((model, result, cost or Decimal(0)))
        self.attempts.append(
            Attempt(
                model.public_id,
                model.provider_name,
                ESCALATED,
                failure,
                elapsed_ms=elapsed,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=None if cost is None else str(cost),
            )
        )
        return False

    async def _send_escalated(self) -> None:
        """Every model after the escalated answers failed: send the last of them after all, booked once."""
        model, result, _ = self._escalated.pop()
        self._cacheable = False
        self.attempts.append(
            Attempt(model.public_id, model.provider_name, "ok", "sent after all: no model after it answered")
        )
        await self._send(model, result, counted=False)

    async def _send(self, model: CatalogModel, result: AttemptResult, *, counted: bool = True) -> None:
        """Send a held answer to the client now, whole, then book the call."""
        result.answered = True
        result.ttft_ms = int((time.monotonic() - self.started) * 1000)
        if self.spec.publish_deltas:
            start = Started(model.public_id, model.provider_name, tuple(a.as_json() for a in self.attempts))
            await self.publisher.publish(start, text="".join(result.text))
            for index in sorted(result.tool_calls):
                call = result.tool_calls[index]
                await self.publisher.publish(ToolPiece(index, call["id"], call["name"], call["arguments"]))
        if counted:
            self.attempts.append(Attempt(model.public_id, model.provider_name, "ok"))
        await self._book(model, result, status="ok")
        if counted:
            await self._keep_outcome(model)

    async def _try_model(
        self, model: CatalogModel, request: ChatRequest, retries: RetryPolicy, *, hold: bool = False, last: bool = False
    ) -> ProviderError | None:
        """Call `model`, again after a failure as the route's retries allow; its last error, or None: it answered.

        Its answer ended the call, unless it is held (`hold`, a cascade's): then it waits in `_held`.
        """
        retry = 0
        while True:
            try:
                passage = await circuit_pass(model, self.spec.call_id)
            except CircuitOpen as skip:
                wait = self._circuit_wait(skip) if last else None
                message = skip.message if wait is None else f"{skip.message}; waited {wait:.1f} s"
                self.attempts.append(
                    Attempt(
                        model.public_id, model.provider_name, skip.kind.value, message, retry_after=skip.retry_after
                    )
                )
                if wait is None:
                    return skip
                await asyncio.sleep(wait)
                continue
            error = await self._attempt_once(model, request, passage, hold=hold)
            if error is None:
                return None
            retry += 1
            delay = retries.delay(retry, error)
            if delay is None or time.monotonic() + delay >= self.deadline:
                return error
            await asyncio.sleep(delay)

    def _circuit_wait(self, skip: CircuitOpen) -> float | None:
        """How long to wait for an open circuit before asking it again; None when the call may not wait that long."""
        if skip.retry_after is None:
            return None
        # A hair past the reopening, so that the circuit is half-open when asked again.
        wait = skip.retry_after + CIRCUIT_WAIT_MARGIN_SECONDS
        if wait > self.circuit_wait_left or time.monotonic() + wait >= self.deadline:
            return None
        self.circuit_wait_left -= wait
        return wait

    async def _attempt_once(
        self, model: CatalogModel, request: ChatRequest, passage: Passage, *, hold: bool = False
    ) -> ProviderError | None:
        """One try of `model`: its error, or None once the call ended (answered, cancelled, failed after text).

        A held answer that ended well does not end the call: it waits in `_held` for the cascade's checks.
        """
        model_id = model.public_id
        attempt_started = time.monotonic()
        result = AttemptResult()
        self._current = (model, result)
        await self._attempt(model, request, result, passage, hold=hold)
        self._current = None
        elapsed = int((time.monotonic() - attempt_started) * 1000)
        if result.cancelled:
            await passage.ended()
            self.attempts.append(Attempt(model_id, model.provider_name, "cancelled", elapsed_ms=elapsed))
            await self._book(model, result, status="cancelled")
            return None
        if result.error is None:
            await passage.answered()
            if hold:
                self._held = (model, result, elapsed)
                return None
            self.attempts.append(Attempt(model_id, model.provider_name, "ok", elapsed_ms=elapsed))
            await self._book(model, result, status="ok")
            await self._keep_outcome(model)
            return None
        error = result.error
        await passage.failed(error)
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
            # Text reached the client: never retried, never continued by another model.
            await self._book(model, result, status="error")
            return None
        return error

    async def _keep_outcome(self, model: CatalogModel) -> None:
        """For a learning cascade, what its checks said of this call's answers (the client has its answer)."""
        if cascade_learns(self.spec):
            escalated = [escalated.public_id for escalated, _, _ in self._escalated]
            await cascade_outcome_keep(self.spec, escalated, model.public_id)

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

    async def _attempt(
        self, model: CatalogModel, request: ChatRequest, result: AttemptResult, passage: Passage, *, hold: bool
    ) -> None:
        events = adapter_for(model.config()).stream(request)
        try:
            # The deadline bounds the whole stream, not only each wait for a chunk.
            async with asyncio.timeout(self.deadline - time.monotonic()):
                await self._relay(model, events, result, passage, hold=hold)
        except TimeoutError:
            result.error = _deadline_error()
        finally:
            await events.aclose()
        if result.cancelled or result.usage is None:
            result.usage = await _estimated_usage(request, result)

    async def _relay(
        self, model: CatalogModel, events: AsyncIterator[Event], result: AttemptResult, passage: Passage, *, hold: bool
    ) -> None:
        """Record the model's events in `result` and publish them as they come (unless held), to the end or a cancel."""
        publish = self.spec.publish_deltas and not hold
        async for event in events:
            if await self.publisher.cancelled():
                result.cancelled = True
                break
            first = isinstance(event, TextDelta | ToolCallDelta) and not result.produced
            if first:
                result.produced = True
                if not hold:
                    result.answered = True
                    result.ttft_ms = int((time.monotonic() - self.started) * 1000)
                if publish:
                    start = Started(model.public_id, model.provider_name, tuple(a.as_json() for a in self.attempts))
                    # The first text goes out with the start, in the same round trip.
                    first_text = event.text if isinstance(event, TextDelta) else ""
                    await self.publisher.publish(start, text=first_text)
                await passage.answered()
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
                        ToolPiece(event.index, event.id or "", event.name or "", event.arguments)
                    )
            elif isinstance(event, Usage):
                result.usage = event
            elif isinstance(event, Finish):
                result.finish = event.reason.value
            elif isinstance(event, StreamError):
                result.error = event.error

    def _booking(self, model: CatalogModel | None, result: AttemptResult | None, status: str) -> UsageBooking:
        usage = result.usage if result else None
        error = result.error if result else None
        return UsageBooking(
            spec=self.spec,
            model=model,
            status=status,
            attempts=[a.as_json() for a in self.attempts],
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cached_input_tokens=usage.cached_input_tokens if usage else 0,
            cache_write_tokens=usage.cache_write_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            tokens_estimated=usage.estimated if usage else False,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            ttft_ms=result.ttft_ms if result else None,
            error_kind=error.kind.value if error else "",
            finish_reason=result.finish if result else "",
            escalations=len(self._escalated),
            extra_cost=sum((cost for _, _, cost in self._escalated), spec_extra_cost(self.spec)),
        )

    async def _book(self, model: CatalogModel, result: AttemptResult, *, status: str) -> None:
        record = usage_record_new(self._booking(model, result, status))
        figures = figures_of(record)
        terminal: Terminal
        if status == "ok":
            await self._keep_in_cache(model, result)
            content: str | None = None
            tool_calls: tuple[dict[str, str], ...] = ()
            if not self.spec.publish_deltas:
                content = "".join(result.text)
                tool_calls = tuple(result.tool_calls[i] for i in sorted(result.tool_calls))
            terminal = Done(figures, result.finish or "stop", content, tool_calls)
        elif status == "error" and result.error is not None:
            terminal = _failed(figures, result.error, after_output=True)
        else:
            terminal = Failed(figures, "cancelled", "cancelled", CANCELLED_STATUS)
        await self._end(record, terminal, "".join(result.text))

    async def _fail(self, error: ProviderError) -> None:
        booking = dataclasses.replace(self._booking(None, None, "error"), error_kind=error.kind.value)
        record = usage_record_new(booking)
        await self._end(record, _failed(figures_of(record), error), "")

    async def _fail_internally(self, exc: Exception) -> None:
        """End the call after an exception of the worker's own, with whatever it had answered."""
        message = "Switchyard failed while running this call"
        model, result = self._current or (None, None)
        if model is not None and result is not None:
            self.attempts.append(Attempt(model.public_id, model.provider_name, INTERNAL_ERROR, message))
        booking = dataclasses.replace(self._booking(model, result, "error"), error_kind=INTERNAL_ERROR)
        if result is not None and result.usage is None:
            try:
                usage = await _estimated_usage(self.spec.request, result)
            except Exception:
                # What failed may be the counting itself: the record then says 0 tokens, estimated.
                usage = Usage(0, 0, estimated=True)
            booking = dataclasses.replace(
                booking, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, tokens_estimated=True
            )
        record = usage_record_new(booking)
        answered = result is not None and result.answered
        terminal = Failed(figures_of(record), INTERNAL_ERROR, message, 500, after_output=answered)
        await self._end(record, terminal, "".join(result.text) if result else "")

    async def _end(self, record: UsageRecord, terminal: Terminal, text: str) -> None:
        self._ended = True
        await call_book(self.publisher, self.spec, record, terminal, text)


async def _estimated_usage(request: ChatRequest, result: AttemptResult) -> Usage:
    """The usage of an attempt whose provider reported none (cancelled, cut, or failed): counted here."""
    output_tokens = await tokens.aestimate_text_tokens("".join(result.text))
    for call in result.tool_calls.values():
        output_tokens += await tokens.aestimate_text_tokens(call["arguments"])
    return Usage(
        input_tokens=await tokens.aestimate_request_tokens(request), output_tokens=output_tokens, estimated=True
    )


def _deadline_error() -> ProviderError:
    return ProviderError(
        ErrorKind.TIMEOUT, f"the call ran out of time (its deadline is {settings.CALL_DEADLINE_SECONDS} s)"
    )


def _failed(figures: Figures, error: ProviderError, *, after_output: bool = False) -> Failed:
    return Failed(figures, error.kind.value, error.message, client_status_for(error), error.retry_after, after_output)


def client_status_for(error: ProviderError) -> int:
    """The HTTP status an OpenAI client expects for a call that ended with `error`."""
    if error.kind in (ErrorKind.BAD_REQUEST, ErrorKind.CONTENT_FILTERED, ErrorKind.CONTEXT_TOO_LONG):
        return 400
    if error.kind in (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.CIRCUIT_OPEN):
        return 503
    return 502
