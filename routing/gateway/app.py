"""The OpenAI-compatible /v1 API as a lean ASGI app, in front of Django for every other path.

/v1 is the hot path of every application call. Django's request cycle costs
several thread hops per request under ASGI (each sync middleware and the
request_started/finished signal receivers run through sync_to_async), which
made the web tier spend ~8 ms of CPU per call; this app handles /v1 with a
handful of Redis round trips and no thread hop, and uses the ORM only on
cache misses (through sync_to_async). Every answer, errors included, is in
OpenAI's shape: an OpenAI SDK must not be able to tell Switchyard from OpenAI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.utils import timezone

from billing.api_auth import Principal, aauthenticate, amark_used, bearer_token
from billing.caps import CapCheck, acap_check
from routing.calls.stream import CallEvent, read_events, request_cancel
from routing.calls.spec import CallSpec
from routing.catalog import Catalog, aget_catalog
from routing.calls.dispatch import enqueue_call
from routing.gateway.openai_request import ChunkWriter, InvalidRequest, completion_body, parse_chat_body
from routing.strategies.resolution import ModelNotFound, NoCapableModel, resolve

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # The body's pieces, each with whether more follow (the last one ends the response in the same write).
    stream: AsyncIterator[tuple[bytes, bool]] | None = None


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, headers or {})


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return json_response(
        status, {"error": {"message": message, "type": type, "param": param, "code": code}}, headers
    )


class BodyTooLarge(Exception):
    pass


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    receive: Receive

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


class GatewayApp:
    """ASGI app for /v1/*."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            receive=receive,
        )
        watcher: asyncio.Task[None] | None = None
        try:
            response = await self.respond(request)
            if response.stream is None:
                await _send_whole(send, response)
                return
            # The client may go away mid-stream: a watcher cancels the relay,
            # whose cleanup cancels the call upstream.
            watcher = asyncio.create_task(_cancel_on_disconnect(receive, asyncio.current_task()))
            await _send_stream(send, response)
        except asyncio.CancelledError:
            if watcher is None or not watcher.done():
                raise
        finally:
            if watcher is not None:
                watcher.cancel()

    async def respond(self, request: Request) -> Response:
        try:
            route = _ROUTES.get(request.path.rstrip("/"))
            if route is None and request.path.startswith("/v1/models/"):
                route = model_retrieve
            if route is None:
                return openai_error(404, f"Invalid URL ({request.method} {request.path})", code="unknown_url")
            principal = await aauthenticate(bearer_token(request.headers.get("authorization", "")))
            if principal is None:
                return openai_error(
                    401,
                    "Incorrect API key provided. You can find your API keys on the API keys page of Switchyard.",
                    code="invalid_api_key",
                )
            # Started before the route, whose first Redis commands then share its round trip.
            marking = asyncio.ensure_future(amark_used(principal))
            try:
                return await route(request, principal)
            finally:
                await _marked(marking)
        except redis.RedisError:
            logger.exception("redis unavailable")
            return openai_error(503, "Switchyard's queue is unavailable; try again shortly.", type="server_error")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("unexpected error on %s", request.path)
            return openai_error(500, "The server had an error while processing your request.", type="server_error")


async def _marked(marking: asyncio.Future[None]) -> None:
    """Wait for the key's last-used mark; its failure is logged, not the call's: the call may be under way."""
    try:
        await marking
    except Exception:
        logger.exception("could not keep the API key's last-used time")


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any] | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return


def _head(response: Response, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    headers = {"content-type": response.content_type, **response.headers, **(extra or {})}
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]


async def _send_whole(send: Send, response: Response) -> None:
    head = _head(response, {"content-length": str(len(response.body))})
    await send({"type": "http.response.start", "status": response.status, "headers": head})
    await send({"type": "http.response.body", "body": response.body})


async def _send_stream(send: Send, response: Response) -> None:
    assert response.stream is not None
    stream = response.stream
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": _head(response)})
        more = True
        async for piece, more in stream:
            await send({"type": "http.response.body", "body": piece, "more_body": more})
        if more:
            await send({"type": "http.response.body", "body": b""})
    finally:
        # Run the relay's cleanup (cancelling the call) now, not at garbage collection.
        await stream.aclose()  # type: ignore[attr-defined]


def _model_object(model_id: str, created: Any, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": int(created.timestamp()), "owned_by": owned_by}


def _listing(catalog: Catalog) -> dict[str, dict[str, Any]]:
    listing = {
        m.public_id: _model_object(m.public_id, m.created, m.provider_name) for m in catalog.models.values() if m.usable
    }
    for route in catalog.routes.values():
        if route.enabled:
            listing[route.name] = _model_object(route.name, route.created, "switchyard")
    return listing


async def models_list(request: Request, principal: Principal) -> Response:
    if request.method != "GET":
        return openai_error(405, f"Method {request.method} not allowed on /v1/models.", headers={"allow": "GET"})
    listing = _listing(await aget_catalog())
    return json_response(200, {"object": "list", "data": [listing[k] for k in sorted(listing)]})


async def model_retrieve(request: Request, principal: Principal) -> Response:
    if request.method != "GET":
        return openai_error(405, f"Method {request.method} not allowed on {request.path}.", headers={"allow": "GET"})
    model_id = request.path.removeprefix("/v1/models/")
    item = _listing(await aget_catalog()).get(model_id)
    if item is None:
        return openai_error(
            404,
            f"The model '{model_id}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return json_response(200, item)


async def chat_completions(request: Request, principal: Principal) -> Response:
    if request.method != "POST":
        return openai_error(405, f"Method {request.method} not allowed; use POST.", headers={"allow": "POST"})
    try:
        raw = await request.body(settings.API_MAX_BODY_BYTES)
    except BodyTooLarge:
        limit = settings.API_MAX_BODY_BYTES
        return openai_error(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")
    try:
        parsed = parse_chat_body(raw)
    except InvalidRequest as exc:
        return openai_error(400, exc.message, param=exc.param, code=exc.code)
    # Sent in the same turn of the event loop, so in one round trip to Redis (with the key's last-used mark).
    catalog, caps = await asyncio.gather(
        aget_catalog(),
        acap_check(user_id=principal.user_id, team_id=principal.team_id, api_key_id=principal.key_id),
    )
    try:
        resolution = resolve(catalog, parsed.model, parsed.request)
    except ModelNotFound as exc:
        return openai_error(404, str(exc), param="model", code="model_not_found")
    except NoCapableModel as exc:
        return openai_error(400, str(exc), param="model", code="model_not_supported")
    if caps.block is not None:
        return openai_error(
            429,
            caps.block.message,
            type="insufficient_quota",
            code="insufficient_quota",
            # x-should-retry: OpenAI's SDKs would otherwise retry a 429 that lasts until the cap resets.
            headers={"retry-after": str(caps.block.retry_after_seconds()), "x-should-retry": "false"},
        )

    call_id = f"chatcmpl-{uuid.uuid4().hex}"
    spec = CallSpec(
        call_id=call_id,
        created_at=timezone.now(),
        requested=parsed.model,
        route=resolution.route,
        chain=resolution.chain,
        skipped=resolution.skipped,
        request=resolution.request,
        user_id=principal.user_id,
        team_id=principal.team_id,
        api_key_id=principal.key_id,
        publish_deltas=parsed.stream,
    )
    await enqueue_call(spec)
    events = read_events(call_id, deadline=time.monotonic() + settings.CALL_DEADLINE_SECONDS + 30)
    try:
        batch = await _first_batch(events)
    except asyncio.CancelledError:
        await request_cancel(call_id)
        raise
    except TimeoutError:
        await request_cancel(call_id)
        return openai_error(
            504, "The call produced no answer in time.", type="server_error", headers={"x-request-id": call_id}
        )
    first = batch[0]
    if first.kind == "error":
        return _with_cap_warning(_error_response(call_id, first.data), caps)
    if not parsed.stream:
        body = completion_body(call_id, int(spec.created_at.timestamp()), first.data["model"], first.data)
        return _with_cap_warning(json_response(200, body, _call_headers(call_id, first.data)), caps)
    return _with_cap_warning(
        Response(
            200,
            headers=_call_headers(call_id, first.data) | {"cache-control": "no-cache", "x-accel-buffering": "no"},
            content_type="text/event-stream; charset=utf-8",
            stream=_relay(call_id, batch, events, include_usage=parsed.include_usage),
        ),
        caps,
    )


def _with_cap_warning(response: Response, caps: CapCheck) -> Response:
    if caps.warning_header:
        response.headers["x-switchyard-cap-warning"] = caps.warning_header
    return response


_ROUTES: dict[str, Callable[[Request, Principal], Awaitable[Response]]] = {
    "/v1/chat/completions": chat_completions,
    "/v1/models": models_list,
}


async def _first_batch(events: AsyncIterator[list[CallEvent]]) -> list[CallEvent]:
    async for batch in events:
        if batch:
            return batch
    raise TimeoutError


def _attempts_header(attempts: list[dict[str, Any]]) -> str:
    return ", ".join(f"{a['model']}={a['outcome']}" for a in attempts)


def _call_headers(call_id: str, data: dict[str, Any]) -> dict[str, str]:
    headers = {"x-request-id": call_id, "x-switchyard-attempts": _attempts_header(data.get("attempts", []))}
    if data.get("model"):
        headers["x-switchyard-model"] = data["model"]
    if data.get("route"):
        headers["x-switchyard-route"] = data["route"]
    if data.get("cost") is not None:
        headers["x-switchyard-cost-usd"] = data["cost"]
    return headers


def _error_response(call_id: str, data: dict[str, Any]) -> Response:
    status = data.get("status") or 502
    kind = data.get("kind", "unavailable")
    message = data.get("message", "the call failed")
    if status >= 500:
        tried = _attempts_header(data.get("attempts", []))
        message = f"All models failed ({tried or 'none tried'}). Last error: {message}"
    code = {"context_too_long": "context_length_exceeded", "content_filtered": "content_filter"}.get(kind, kind)
    headers = _call_headers(call_id, data)
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


async def _relay(
    call_id: str, batch: list[CallEvent], events: AsyncIterator[list[CallEvent]], *, include_usage: bool
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
        yield held + writer.error("the call produced no answer in time", "server_error", "timeout"), False
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
