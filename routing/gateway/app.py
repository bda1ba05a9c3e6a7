"""The OpenAI-compatible /v1 API as a lean ASGI app, in front of Django for every other path.

/v1 is the hot path of every application call. Django's request cycle costs
several thread hops per request under ASGI (each sync middleware and the
request_started/finished signal receivers run through sync_to_async), several
times the CPU of the rest of a call (BENCHMARKS.md); this app handles /v1 with a
handful of Redis round trips and no thread hop, and uses the ORM only on
cache misses (through sync_to_async). Every answer, errors included, is in
OpenAI's shape: an OpenAI SDK must not be able to tell Switchyard from OpenAI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from billing.api_auth import Principal, aauthenticate, amark_used, bearer_token
from routing.gateway.endpoints import chat_completions, model_retrieve, models_list
from routing.gateway.http import ClientDisconnected, Receive, Request, Response, openai_error

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]


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
        except ClientDisconnected:
            # No call was started: it starts only once the whole body is in.
            logger.debug("%s %s: the client went away before its request arrived", request.method, request.path)
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
                return openai_error(
                    404,
                    f"Invalid URL ({request.method} {request.path})",
                    code="unknown_url",
                )
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
            return openai_error(
                503,
                "Switchyard's queue is unavailable; try again shortly.",
                type="server_error",
            )
        except (asyncio.CancelledError, ClientDisconnected):
            raise
        except Exception:
            logger.exception("unexpected error on %s", request.path)
            return openai_error(
                500,
                "The server had an error while processing your request.",
                type="server_error",
            )


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
    headers = {
        "content-type": response.content_type,
        **response.headers,
        **(extra or {}),
    }
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]


async def _send_whole(send: Send, response: Response) -> None:
    head = _head(response, {"content-length": str(len(response.body))})
    await send({"type": "http.response.start", "status": response.status, "headers": head})
    await send({"type": "http.response.body", "body": response.body})


async def _send_stream(send: Send, response: Response) -> None:
    assert response.stream is not None
    stream = response.stream
    try:
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _head(response),
            }
        )
        more = True
        async for piece, more in stream:
            await send({"type": "http.response.body", "body": piece, "more_body": more})
        if more:
            await send({"type": "http.response.body", "body": b""})
    finally:
        # Run the relay's cleanup (cancelling the call) now, not at garbage collection.
        await stream.aclose()  # type: ignore[attr-defined]


_ROUTES: dict[str, Callable[[Request, Principal], Awaitable[Response]]] = {
    "/v1/chat/completions": chat_completions,
    "/v1/models": models_list,
}
