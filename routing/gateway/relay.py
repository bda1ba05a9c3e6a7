"""A call's events, read from its Redis stream, as /v1 answers: headers, an error body, or SSE chunks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis

from routing.calls.events import CallEvent, Done, Failed, Started, Text, ToolPiece
from routing.calls.spec import CallSpec
from routing.calls.stream import request_cancel, stream_read_to_end
from routing.calls.watchdog import CallLost, CallWatch
from routing.gateway.http import Response, header_value, json_response, openai_error
from routing.gateway.openai_response import ChunkWriter, completion_body
from routing.strategies.resolution import reasons

logger = logging.getLogger(__name__)

# The outcome a stream's headers give the model that is answering: its end is not known yet.
ANSWERING = "answering"

_ERROR_CODES = {
    "context_too_long": "context_length_exceeded",
    "content_filtered": "content_filter",
    "lost": "call_lost",
}


def attempts_text(attempts: Sequence[dict[str, Any]]) -> str:
    """`sim/flaky-7b=rate_limited, sim/atlas=ok`: each model tried and its outcome."""
    return ", ".join(f"{a['model']}={a['outcome']}" for a in attempts)


def call_headers(spec: CallSpec, event: CallEvent) -> dict[str, str]:
    """What happened, as the x-switchyard-* headers tell it, as far as `event` (the call's first) knows."""
    headers = {"x-request-id": spec.call_id}
    if spec.route:
        headers["x-switchyard-route"] = spec.route
    if spec.routing:
        # A header carries ASCII only.
        headers["x-switchyard-route-reason"] = header_value(reasons(spec.routing).replace("→", "->"))
    if isinstance(event, Started):
        headers["x-switchyard-model"] = event.model
        so_far = [*event.attempts, {"model": event.model, "outcome": ANSWERING}]
        headers["x-switchyard-attempts"] = attempts_text(so_far)
    elif isinstance(event, Done | Failed):
        figures = event.figures
        if figures.model:
            headers["x-switchyard-model"] = figures.model
        headers["x-switchyard-attempts"] = attempts_text(figures.attempts)
        if figures.cost is not None:
            headers["x-switchyard-cost-usd"] = figures.cost
    if spec.cache_key:
        hit = event.cache_hit if isinstance(event, Started) else isinstance(event, Done) and event.figures.cache_hit
        headers["x-switchyard-cache"] = "hit" if hit else "miss"
    return headers


def error_response(spec: CallSpec, failed: Failed) -> Response:
    message = failed.message
    if failed.status >= 500 and failed.figures.attempts:
        message = f"All models failed ({attempts_text(failed.figures.attempts)}). Last error: {message}"
    code = _ERROR_CODES.get(failed.error_kind, failed.error_kind)
    headers = call_headers(spec, failed)
    if failed.retry_after:
        headers["retry-after"] = str(max(1, round(failed.retry_after)))
    return openai_error(
        failed.status,
        message,
        type="invalid_request_error" if failed.status == 400 else "server_error",
        param="messages" if code == "context_length_exceeded" else None,
        code=code,
        headers=headers,
    )


async def answer_response(
    spec: CallSpec,
    batch: list[CallEvent],
    events: AsyncIterator[list[CallEvent]] | None,
    *,
    include_usage: bool,
    watch: CallWatch | None = None,
) -> Response:
    """The call's answer from its first batch of events on: its error, its whole body, or its stream.

    `events` gives the later batches, read from the call's stream; None
    when `batch` holds every event of the call (a cache hit answered by the
    web, which has no stream to read or release). `watch` is the call's
    watchdog (routing/calls/watchdog.py), for a call a worker runs.
    """
    first = batch[0]
    if isinstance(first, Done | Failed):
        if events is not None:
            await stream_read_to_end(spec.call_id)
        if isinstance(first, Failed):
            return error_response(spec, first)
        body = completion_body(spec.call_id, int(spec.created_at.timestamp()), first)
        return json_response(200, body, call_headers(spec, first))
    return Response(
        200,
        headers=call_headers(spec, first) | {"cache-control": "no-cache", "x-accel-buffering": "no"},
        content_type="text/event-stream; charset=utf-8",
        stream=sse_stream(spec, batch, events, include_usage=include_usage, watch=watch),
    )


async def sse_stream(
    spec: CallSpec,
    batch: list[CallEvent],
    events: AsyncIterator[list[CallEvent]] | None,
    *,
    include_usage: bool,
    watch: CallWatch | None = None,
) -> AsyncIterator[tuple[bytes, bool]]:
    """The SSE pieces of a call, from its first batch of events (which begins with its start) on.

    `events` and `watch` as for answer_response: `watch` looks, on each quiet interval, for a run that
    died mid-answer, which it pushes again to be ended.
    """
    first = batch[0]
    writer = ChunkWriter(spec.call_id, first.model if isinstance(first, Started) else "")
    finished = False
    # Each piece is a write to the client (a system call, and ASGI's machinery
    # around it): the events read together go out together, the role chunk
    # waits for the first text, and the end goes out in one piece, which
    # also ends the response.
    held = writer.role()
    try:
        while True:
            pieces: list[bytes] = []
            if not batch:
                pieces.append(b": keepalive\n\n")
            for event in batch:
                if isinstance(event, Text):
                    pieces.append(writer.text(event.text))
                elif isinstance(event, ToolPiece):
                    pieces.append(writer.tool(event))
                elif isinstance(event, Done):
                    finished = True
                    pieces.append(writer.finish(event.finish))
                    if include_usage:
                        pieces.append(writer.usage(event.figures))
                    pieces.append(writer.done())
                elif isinstance(event, Failed):
                    finished = True
                    pieces.append(writer.error(event.message, "server_error", event.error_kind))
            if finished:
                if events is not None:
                    await stream_read_to_end(spec.call_id)
                yield held + b"".join(pieces), False
                return
            if pieces:
                yield held + b"".join(pieces), True
                held = b""
            assert events is not None, "a call's whole batch of events ends with its end"
            if not batch and watch is not None:
                await watch.check(answering=True)
            batch = await anext(events)
    except CallLost:
        # Pushed again and still not ended: no worker takes it now. One that comes back books it.
        finished = True
        message = "the worker running this call stopped; the answer is incomplete"
        yield held + writer.error(message, "server_error", "worker_lost"), False
    except TimeoutError:
        finished = True
        yield held + writer.error("the call produced no answer in time", "server_error", "timeout"), False
    except redis.RedisError:
        # Redis went away mid-answer: the client gets an error in the stream's own terms, not a cut
        # connection, and the call is still asked to stop (if Redis is back by then).
        logger.warning("lost the event stream of call %s", spec.call_id, exc_info=True)
        message = "Switchyard lost this call's event stream; the answer is incomplete."
        yield held + writer.error(message, "server_error", "stream_lost"), False
    finally:
        if not finished:
            with contextlib.suppress(redis.RedisError):
                await asyncio.shield(request_cancel(spec.call_id))
