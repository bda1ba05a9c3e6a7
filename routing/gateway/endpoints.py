"""The /v1 endpoints: the model list, one model, and chat completions."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone

from billing.api_auth import Principal
from billing.caps import CapCheck, acap_check
from routing.calls.dispatch import enqueue_call
from routing.calls.spec import CallSpec
from routing.calls.stream import read_events, request_cancel
from routing.catalog import Catalog, aget_catalog
from routing.gateway.http import (
    BodyTooLarge,
    Request,
    Response,
    json_response,
    openai_error,
)
from routing.gateway.openai_request import InvalidRequest, parse_chat_body
from routing.gateway.openai_response import completion_body
from routing.gateway.relay import call_headers, error_response, first_batch, sse_stream
from routing.strategies.resolution import ModelNotFound, NoCapableModel, resolve


def _model_object(model_id: str, created: Any, owned_by: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(created.timestamp()),
        "owned_by": owned_by,
    }


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
        return openai_error(
            405,
            f"Method {request.method} not allowed on /v1/models.",
            headers={"allow": "GET"},
        )
    listing = _listing(await aget_catalog())
    return json_response(200, {"object": "list", "data": [listing[k] for k in sorted(listing)]})


async def model_retrieve(request: Request, principal: Principal) -> Response:
    if request.method != "GET":
        return openai_error(
            405,
            f"Method {request.method} not allowed on {request.path}.",
            headers={"allow": "GET"},
        )
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
        return openai_error(
            405,
            f"Method {request.method} not allowed; use POST.",
            headers={"allow": "POST"},
        )
    try:
        raw = await request.body(settings.API_MAX_BODY_BYTES)
    except BodyTooLarge:
        limit = settings.API_MAX_BODY_BYTES
        return openai_error(
            413,
            f"Request body too large: the limit is {limit} bytes.",
            code="request_too_large",
        )
    try:
        parsed = parse_chat_body(raw)
    except InvalidRequest as exc:
        return openai_error(400, exc.message, param=exc.param, code=exc.code)
    # Sent in the same turn of the event loop, so in one round trip to Redis (with the key's last-used mark).
    catalog, caps = await asyncio.gather(
        aget_catalog(),
        acap_check(
            user_id=principal.user_id,
            team_id=principal.team_id,
            api_key_id=principal.key_id,
        ),
    )
    try:
        resolution = resolve(catalog, parsed.model, parsed.request)
    except ModelNotFound as exc:
        return openai_error(404, str(exc), param="model", code="model_not_found")
    except NoCapableModel as exc:
        return openai_error(400, str(exc), param=exc.param, code=exc.code)
    if caps.block is not None:
        return openai_error(
            429,
            caps.block.message,
            type="insufficient_quota",
            code="insufficient_quota",
            # x-should-retry: OpenAI's SDKs would otherwise retry a 429 that lasts until the cap resets.
            headers={
                "retry-after": str(caps.block.retry_after_seconds()),
                "x-should-retry": "false",
            },
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
        batch = await first_batch(events)
    except asyncio.CancelledError:
        await request_cancel(call_id)
        raise
    except TimeoutError:
        await request_cancel(call_id)
        return openai_error(
            504,
            "The call produced no answer in time.",
            type="server_error",
            headers={"x-request-id": call_id},
        )
    first = batch[0]
    if first.kind == "error":
        return _with_cap_warning(error_response(call_id, first.data), caps)
    if not parsed.stream:
        body = completion_body(call_id, int(spec.created_at.timestamp()), first.data["model"], first.data)
        return _with_cap_warning(json_response(200, body, call_headers(call_id, first.data)), caps)
    return _with_cap_warning(
        Response(
            200,
            headers=call_headers(call_id, first.data) | {"cache-control": "no-cache", "x-accel-buffering": "no"},
            content_type="text/event-stream; charset=utf-8",
            stream=sse_stream(call_id, batch, events, include_usage=parsed.include_usage),
        ),
        caps,
    )


def _with_cap_warning(response: Response, caps: CapCheck) -> Response:
    if caps.warning_header:
        response.headers["x-switchyard-cap-warning"] = caps.warning_header
    return response
