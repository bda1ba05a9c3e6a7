"""The /v1 endpoints: the model list, one model, and chat completions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import redis
from django.conf import settings

from billing.api_auth import Principal
from routing.calls.events import CallEvent
from routing.calls.reservation import landed_models
from routing.calls.spec import CallSpec
from routing.calls.start import Caller, CallRefused, call_start
from routing.calls.stream import read_events, request_cancel
from routing.calls.watchdog import CallLost, CallWatch, call_give_up
from routing.catalog import Catalog, aget_catalog
from routing.gateway.hints import hints_from
from routing.gateway.http import BodyTooLarge, Request, Response, header_value, json_response, openai_error
from routing.gateway.openai_request import InvalidRequest, parse_chat_body
from routing.gateway.relay import answer_response

logger = logging.getLogger(__name__)

# While nothing of a call has reached its client, Redis may be away this long
# (a restart) before the client gets a 503; it is asked again this often.
REDIS_OUTAGE_GRACE_SECONDS = 15
REDIS_RETRY_SECONDS = 0.5


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
        hints = hints_from(parsed.metadata, request.headers)
    except InvalidRequest as exc:
        return openai_error(400, exc.message, param=exc.param, code=exc.code)
    caller = Caller(user_id=principal.user_id, team_id=principal.team_id, api_key_id=principal.key_id)
    try:
        admitted = await call_start(
            caller=caller,
            requested=parsed.model,
            request=parsed.request,
            source="api",
            publish_deltas=parsed.stream,
            hints=hints,
        )
    except CallRefused as refused:
        return openai_error(
            refused.status,
            refused.message,
            type=refused.error_type,
            param=refused.param,
            code=refused.code,
            headers=refused.headers,
        )
    [spec] = admitted.specs
    if admitted.replay:
        response = await answer_response(spec, list(admitted.replay), None, include_usage=parsed.include_usage)
    else:
        response = await _answer(spec, parsed.include_usage)
    response.headers.update(admitted.rate_headers)
    if warning := admitted.caps.warning_text:
        response.headers["x-switchyard-cap-warning"] = header_value(warning)
    if landed := landed_models(spec):
        response.headers["x-switchyard-soft-landing"] = header_value(
            f"left out {', '.join(landed)}: a spend cap has less left than {'it' if len(landed) == 1 else 'they'} "
            "may cost"
        )
    return response


async def _answer(spec: CallSpec, include_usage: bool) -> Response:
    """The call's answer: its error, its whole body, or its stream from the first event on."""
    deadline = time.monotonic() + settings.CALL_DEADLINE_SECONDS + 30
    watch = CallWatch(spec)
    outage_since: float | None = None
    while True:
        events = read_events(spec.call_id, deadline=deadline)
        try:
            batch = await _first_batch(spec, events, watch)
            break
        except redis.RedisError:
            await events.aclose()
            # Nothing of the call has reached its client yet: a Redis that went
            # away (restarting, with its queue on disk) is waited for, and the
            # call's stream read again from its start.
            now = time.monotonic()
            outage_since = outage_since or now
            if now - outage_since > REDIS_OUTAGE_GRACE_SECONDS:
                raise
            logger.warning("lost Redis while waiting for call %s; reading its stream again", spec.call_id)
            await asyncio.sleep(REDIS_RETRY_SECONDS)
        except asyncio.CancelledError:
            await request_cancel(spec.call_id)
            raise
        except (TimeoutError, StopAsyncIteration):
            await request_cancel(spec.call_id)
            return openai_error(
                504, "The call produced no answer in time.", type="server_error", headers={"x-request-id": spec.call_id}
            )
    return await answer_response(spec, batch, events, include_usage=include_usage, watch=watch)


async def _first_batch(
    spec: CallSpec, events: AsyncGenerator[list[CallEvent], None], watch: CallWatch
) -> list[CallEvent]:
    """The call's first events; while none come, a call lost before any worker took it is pushed again or given up."""
    batch = await anext(events)
    while not batch:
        try:
            await watch.check()
        except CallLost:
            given_up = await call_give_up(spec, waited_ms=int((time.monotonic() - watch.pushed_at) * 1000))
            if given_up is not None:
                await events.aclose()
                return [given_up]
        batch = await anext(events)
    return batch
