"""The one way to start a call, for /v1 and the playground alike.

A call is admitted (its route resolved into a chain, its CallSpec built, its
worst-case cost reserved against its caller's spend caps), then enqueued for
a worker. `call_start` does
both; the playground admits all the columns of a run first and enqueues
them once their rows are committed (`calls_admit`, `calls_enqueue`), so
that a worker finishing a call always finds the row it updates.

`call_start` also looks a call that uses the response cache up, in the
round trip that takes its rate limits, and answers a hit itself, admitted
as any call (rate limits and spend caps apply as to a miss) but never
enqueued: its booking goes to the workers instead
(routing/calls/cache_hits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from django.utils import timezone

from billing.caps.check import CapBlock, CapCheck, CapsUnavailable, cap_check, caps_reserve
from billing.money import to_units
from billing.ratelimits.limiter import RateCheck, rate_limits_take
from billing.services import spend_release
from routing.arena_standings import arena_standings_read, standings_scope
from routing.calls.cache_hits import cache_hit_answer
from routing.calls.classify import route_classified
from routing.calls.dispatch import call_enqueue
from routing.calls.events import CallEvent
from routing.calls.reservation import Unreservable, spec_for_capped_caller, spec_landed
from routing.calls.spec import CallSpec
from routing.catalog import Catalog, aget_catalog
from routing.model_health import model_health_read
from routing.providers.types import ChatRequest
from routing.resilience.cache import CachedAnswer, cache_policy, cache_read, cache_scope
from routing.strategies.base import Hints
from routing.strategies.classifier import Classifier
from routing.strategies.fastest import Fastest
from routing.strategies.quality import Quality
from routing.strategies.resolution import MAX_HOPS, NO_HINTS, ModelNotFound, NoCapableModel, resolve, route_steps
from routing.strategies.sensitivity import afind_personal_data
from routing.tokens import aestimate_request_tokens

CALL_ID_PREFIX = {"api": "chatcmpl-", "playground": "pg-"}


logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is booked to and capped by."""

    user_id: int
    team_id: int | None = None
    api_key_id: int | None = None

    @property
    def sticky_key(self) -> str:
        """Who calls, for a strategy that keeps a caller on one model: the API key, else the user."""
        return f"key:{self.api_key_id}" if self.api_key_id is not None else f"user:{self.user_id}"


class CallRefused(Exception):
    """The call cannot start. `message` says why in words fit for its client; the rest is for /v1's error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.error_type = error_type
        self.param = param
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Admitted:
    """Calls that may start, not yet enqueued, and the caps' warnings for their answers."""

    specs: tuple[CallSpec, ...]
    caps: CapCheck
    # The caller's rate limits as OpenAI's x-ratelimit-* headers (billing/ratelimits/), for the answer.
    rate_headers: dict[str, str] = field(default_factory=dict)
    # A call answered from the response cache by call_start: its events, ending with its Done; else ().
    replay: tuple[CallEvent, ...] = ()


async def calls_admit(
    *,
    caller: Caller,
    requested: Sequence[str],
    request: ChatRequest,
    source: str,
    publish_deltas: bool = True,
    hints: Hints = NO_HINTS,
) -> Admitted:
    """One call per item of `requested` (a model id or a route name), all admitted or none (CallRefused)."""
    _, admitted, _ = await _admit(
        caller=caller,
        requested=requested,
        request=request,
        source=source,
        publish_deltas=publish_deltas,
        hints=hints,
        cache_lookup=False,
    )
    return admitted


async def _admit(
    *,
    caller: Caller,
    requested: Sequence[str],
    request: ChatRequest,
    source: str,
    publish_deltas: bool,
    hints: Hints,
    cache_lookup: bool,
) -> tuple[Catalog, Admitted, CachedAnswer | None]:
    """calls_admit, with the catalog it used and, for one call when `cache_lookup`, its cached answer if any."""
    # Sent in the same turn of the event loop, so in one round trip to Redis.
    catalog, caps = await asyncio.gather(
        aget_catalog(),
        cap_check(user_id=caller.user_id, team_id=caller.team_id, api_key_id=caller.api_key_id),
    )
    # Only a route chooses a provider, so only a call to a route is read for personal data.
    routed = any(name in catalog.routes for name in requested)
    personal_data = await afind_personal_data(request) if routed else ()
    health, standings = (
        await asyncio.gather(_model_health(catalog), _arena_standings(catalog, caller)) if routed else ({}, {})
    )
    now = timezone.now()
    specs = tuple(
        call_spec_for(
            catalog,
            caller=caller,
            requested=name,
            request=request,
            source=source,
            call_id=f"{CALL_ID_PREFIX[source]}{uuid.uuid4().hex}",
            created_at=now,
            publish_deltas=publish_deltas,
            hints=hints,
            personal_data=personal_data,
            health=health,
            standings=standings,
        )
        for name in requested
    )
    looked_up = specs[0].cache_key if cache_lookup and len(specs) == 1 else ""
    cached: CachedAnswer | None = None
    if looked_up:
        # The entry is read as the rate limits are taken, in the same round trip; a refused call ignores it.
        # Its key depends on what was asked, not on how a classifier routes it.
        rates, cached = await asyncio.gather(_rate_limits_take(caller, request, len(specs)), cache_read(looked_up))
    else:
        # Not gathered with nothing: a task more per call costs the web's hot path.
        rates = await _rate_limits_take(caller, request, len(specs))
    if Classifier.name in catalog.strategies and caps.block is None:
        specs = await _classified(catalog, caller, specs, hints, personal_data, health, standings)
    if caps.capped:
        try:
            specs = tuple(spec_for_capped_caller(catalog, spec) for spec in specs)
        except Unreservable as exc:
            raise CallRefused(str(exc), status=400, code="model_not_priced", param="model") from None
        if not any(spec.reserved_units for spec in specs):
            # Calls that can only reach free models cost nothing: a spend cap, even used up, has no say.
            admitted = Admitted(specs, dataclasses.replace(caps, block=None), rates.headers)
            return catalog, admitted, cached
        try:
            reserved = await caps_reserve(caps, [(spec.call_id, spec.reserved_units) for spec in specs])
            if reserved.block is not None and (landed := _soft_landed(catalog, specs, reserved.block)):
                specs = landed
                reserved = await caps_reserve(caps, [(spec.call_id, spec.reserved_units) for spec in specs])
            caps = reserved
        except CapsUnavailable as exc:
            raise CallRefused(str(exc), status=503, code="caps_unavailable", error_type="api_error") from None
    if caps.block is not None:
        raise _cap_refusal(caps.block)
    return catalog, Admitted(specs, caps, rates.headers), cached


async def _rate_limits_take(caller: Caller, request: ChatRequest, calls: int) -> RateCheck:
    """The calls counted against the caller's rate limits; CallRefused (429, as OpenAI's) when one has no room."""

    async def tokens() -> int:
        # What OpenAI counts toward tokens per minute at admission: the prompt and max_tokens.
        return calls * (await aestimate_request_tokens(request) + (request.max_tokens or 0))

    rates = await rate_limits_take(
        user_id=caller.user_id, team_id=caller.team_id, api_key_id=caller.api_key_id, requests=calls, tokens=tokens
    )
    if (refusal := rates.refusal) is None:
        return rates
    headers = {"retry-after": str(max(1, math.ceil(refusal.retry_after_ms / 1000)))}
    if refusal.hopeless:
        headers = {"x-should-retry": "false"}
    raise CallRefused(refusal.message, status=429, code="rate_limit_exceeded", error_type=refusal.kind, headers=headers)


async def _classified(
    catalog: Catalog,
    caller: Caller,
    specs: tuple[CallSpec, ...],
    hints: Hints,
    personal_data: tuple[str, ...],
    health: Mapping[str, Any],
    standings: Mapping[str, Any],
) -> tuple[CallSpec, ...]:
    """The specs resolved again once their classifier routes have asked their models (after the rate limits).

    A classifier route reached only through another route's rule is found
    on the first resolution, so the loop is as deep as routes may nest.
    Each classification is paid once, by the first call that used it.
    """
    found: dict[str, Any] = {}
    for _ in range(MAX_HOPS + 1):
        pending = {
            step["route"]
            for spec in specs
            for step in route_steps(spec.routing)
            if step["strategy"] == Classifier.name and step["route"] not in found
        }
        if not pending:
            break
        names = sorted(pending)
        answers = await asyncio.gather(
            *(
                route_classified(
                    catalog,
                    catalog.routes[name],
                    specs[0].request,
                    specs[0].call_id,
                    specs[0].created_at,
                    personal_data,
                )
                for name in names
            )
        )
        found |= dict(zip(names, answers, strict=True))
        specs = tuple(
            call_spec_for(
                catalog,
                caller=caller,
                requested=spec.requested,
                request=spec.request,
                source=spec.source,
                call_id=spec.call_id,
                created_at=spec.created_at,
                publish_deltas=spec.publish_deltas,
                hints=hints,
                personal_data=personal_data,
                health=health,
                standings=standings,
                classifications=found,
            )
            for spec in specs
        )
    charged: set[str] = set()
    paid = []
    for spec in specs:
        costs = []
        for step in route_steps(spec.routing):
            cost = found.get(step["route"], {}).get("cost")
            if step["strategy"] == Classifier.name and cost and step["route"] not in charged:
                charged.add(step["route"])
                costs.append(cost)
        paid.append(dataclasses.replace(spec, extra_costs=tuple(costs)) if costs else spec)
    return tuple(paid)


async def _model_health(catalog: Catalog) -> Mapping[str, Any]:
    """The models' recent measurements, read only when some route's strategy uses them; {} while Redis is away."""
    if Fastest.name not in catalog.strategies:
        return {}
    try:
        return await model_health_read()
    except redis.RedisError:
        logger.warning("could not read the models' measurements; the routes that use them keep their order")
        return {}


async def _arena_standings(catalog: Catalog, caller: Caller) -> Mapping[str, Any]:
    """The caller's arena standings, read only when some route's strategy uses them; {} while Redis is away."""
    if Quality.name not in catalog.strategies:
        return {}
    try:
        return await arena_standings_read(standings_scope(team_id=caller.team_id, user_id=caller.user_id))
    except redis.RedisError:
        logger.warning("could not read the arena standings; the routes that use them take their default model")
        return {}


def _soft_landed(catalog: Catalog, specs: Sequence[CallSpec], block: CapBlock) -> tuple[CallSpec, ...] | None:
    """The specs again, those of soft-landing routes without the models the cap's room cannot carry; None if none."""
    if block.used_up:
        return None
    room = to_units(block.room)
    landed = [spec_landed(catalog, spec, room, block.name) for spec in specs]
    if not any(landed):
        return None
    return tuple(new or spec for new, spec in zip(landed, specs, strict=True))


def _cap_refusal(block: CapBlock) -> CallRefused:
    headers = {"retry-after": str(block.retry_after_seconds())}
    if block.lasts_until_reset:
        # OpenAI's SDKs would otherwise retry a 429 that lasts until the cap resets.
        headers["x-should-retry"] = "false"
    return CallRefused(
        block.message, status=429, code="insufficient_quota", error_type="insufficient_quota", headers=headers
    )


def call_spec_for(
    catalog: Catalog,
    *,
    caller: Caller,
    requested: str,
    request: ChatRequest,
    source: str,
    call_id: str,
    created_at: dt.datetime,
    publish_deltas: bool = True,
    hints: Hints = NO_HINTS,
    personal_data: tuple[str, ...] | None = None,
    health: Mapping[str, Any] | None = None,
    standings: Mapping[str, Any] | None = None,
    classifications: Mapping[str, Any] | None = None,
) -> CallSpec:
    """The spec of one call: `requested` resolved into its chain. No cap is checked here (calls_admit does)."""
    try:
        resolution = resolve(
            catalog,
            requested,
            request,
            hints=hints,
            caller=caller.sticky_key,
            now=created_at,
            personal_data=personal_data,
            health=health,
            standings=standings,
            classifications=classifications,
        )
    except ModelNotFound as exc:
        raise CallRefused(str(exc), status=404, code="model_not_found", param="model") from None
    except NoCapableModel as exc:
        raise CallRefused(str(exc), status=400, code=exc.code, param=exc.param) from None
    cache = cache_policy(
        catalog,
        route=resolution.route,
        target=requested,
        request=request,
        scope=cache_scope(team_id=caller.team_id, user_id=caller.user_id),
        wish=hints.cache,
    )
    return CallSpec(
        call_id=call_id,
        created_at=created_at,
        requested=requested,
        route=resolution.route,
        chain=resolution.chain,
        skipped=resolution.skipped,
        request=resolution.request,
        user_id=caller.user_id,
        team_id=caller.team_id,
        api_key_id=caller.api_key_id,
        source=source,
        publish_deltas=publish_deltas,
        routing=resolution.routing,
        checks=resolution.checks,
        circuit_wait=hints.circuit_wait,
        cache_key=cache.key if cache else "",
        cache_ttl=cache.ttl_seconds if cache else 0,
    )


async def calls_sized_again(caller: Caller, catalog: Catalog, specs: dict[int, CallSpec]) -> dict[int, CallSpec]:
    """Specs rebuilt to push lost calls again, sized as at admission for a capped caller.

    A call whose reservation lapsed meanwhile is reserved again by the
    worker that takes it. One whose models all lost their price is left out.
    """
    caps = await cap_check(user_id=caller.user_id, team_id=caller.team_id, api_key_id=caller.api_key_id)
    if not caps.capped:
        return specs
    sized: dict[int, CallSpec] = {}
    for position, spec in specs.items():
        with contextlib.suppress(Unreservable):
            sized[position] = spec_for_capped_caller(catalog, spec)
    return sized


async def calls_abandon(specs: Sequence[CallSpec]) -> None:
    """Give up admitted calls that will not be enqueued after all: their reservations are freed."""
    await spend_release([spec.call_id for spec in specs])


async def calls_enqueue(specs: Sequence[CallSpec]) -> None:
    """Hand admitted calls to the workers; sent together, they share their task messages."""
    await asyncio.gather(*(call_enqueue(spec) for spec in specs))


async def call_start(
    *,
    caller: Caller,
    requested: str,
    request: ChatRequest,
    source: str,
    publish_deltas: bool = True,
    hints: Hints = NO_HINTS,
) -> Admitted:
    """Admit one call and enqueue it, or answer it from the response cache (`replay`); CallRefused when it may not.

    Raises redis.RedisError when it could be neither enqueued nor booked.
    """
    started = time.monotonic()
    catalog, admitted, cached = await _admit(
        caller=caller,
        requested=[requested],
        request=request,
        source=source,
        publish_deltas=publish_deltas,
        hints=hints,
        cache_lookup=True,
    )
    if cached is not None:
        [spec] = admitted.specs
        latency_ms = int((time.monotonic() - started) * 1000)
        replay = await cache_hit_answer(spec, catalog, cached, latency_ms)
        return dataclasses.replace(admitted, replay=tuple(replay))
    await calls_enqueue(admitted.specs)
    return admitted
