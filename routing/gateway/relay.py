"""A call's events, read from its Redis stream, as /v1 answers: headers, an error body, or SSE chunks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis

from routing.calls.stream import CallEvent, request_cancel
from routing.gateway.http import Response, openai_error
from routing.gateway.openai_response import ChunkWriter

logger = logging.getLogger(__name__)


async def first_batch(events: AsyncIterator[list[CallEvent]]) -> list[CallEvent]:
    async for batch in events:
        if batch:
            return batch
    raise TimeoutError


def _attempts_header(attempts: list[dict[str, Any]]) -> str:
    return ", ".join(f"{a['model']}={a['outcome']}" for a in attempts)


def call_headers(call_id: str, data: dict[str, Any]) -> dict[str, str]:
    headers = {
        "x-request-id": call_id,
        "x-switchyard-attempts": _attempts_header(data.get("attempts", [])),
    }
    if data.get("model"):
        headers["x-switchyard-model"] = data["model"]
    if data.get("route"):
        headers["x-switchyard-route"] = data["route"]
    if data.get("cost") is not None:
        headers["x-switchyard-cost-usd"] = data["cost"]
    return headers


def error_response(call_id: str, data: dict[str, Any]) -> Response:
    status = data.get("status") or 502
    kind = data.get("kind", "unavailable")
    message = data.get("message", "the call failed")
    if status >= 500:
        tried = _attempts_header(data.get("attempts", []))
        message = f"All models failed ({tried or 'none tried'}). Last error: {message}"
    code = {
        "context_too_long": "context_length_exceeded",
        "content_filtered": "content_filter",
    }.get(kind, kind)
    headers = call_headers(call_id, data)
    if data.get("retry_after"):
        headers["retry-after"] = str(max(1, round(data["retry_after"])))
    return openai_error(
        status,
        message,
        type="invalid_request_error" if status == 400 else "server_error",
        param="messages" if code == "context_length_exceeded" else None,
        code=code,
        headers=headers,
    )


async def sse_stream(
    call_id: str,
    batch: list[CallEvent],
    events: AsyncIterator[list[CallEvent]],
    *,
    include_usage: bool,
) -> AsyncIterator[tuple[bytes, bool]]:
    """The SSE pieces of a call, from its first batch of events (which begins with its start) on."""
    writer = ChunkWriter(call_id, batch[0].data.get("model", ""))
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
                if event.kind == "delta":
                    pieces.append(writer.text(event.data["c"]))
                elif event.kind == "tool":
                    pieces.append(writer.tool(event.data))
                elif event.kind == "done":
                    finished = True
                    pieces.append(writer.finish(event.data.get("finish", "stop")))
                    if include_usage:
                        pieces.append(writer.usage(event.data["usage"], event.data.get("cost")))
                    pieces.append(writer.done())
                elif event.kind == "error":
                    finished = True
                    message = event.data.get("message", "the call failed")
                    pieces.append(writer.error(message, "server_error", event.data.get("kind")))
            if finished:
                yield held + b"".join(pieces), False
                return
            if pieces:
                yield held + b"".join(pieces), True
                held = b""
            batch = await anext(events)
    except TimeoutError:
        finished = True
        yield (
            held + writer.error("the call produced no answer in time", "server_error", "timeout"),
            False,
        )
    except redis.RedisError:
        # Redis went away mid-answer: the client gets an error in the stream's own terms, not a cut
        # connection, and the call is still asked to stop (if Redis is back by then).
        logger.warning("lost the event stream of call %s", call_id, exc_info=True)
        message = "Switchyard lost this call's event stream; the answer is incomplete."
        yield held + writer.error(message, "server_error", "stream_lost"), False
    finally:
        if not finished:
            with contextlib.suppress(redis.RedisError):
                await asyncio.shield(request_cancel(call_id))
