"""The response cache: an identical request answered again from Redis, without asking a model.

Identical means the same key: the caller's scope (its team, or a teamless
user alone, so no answer ever crosses from one team to another), what it
asked for (the route, or the model asked for by id), the messages and every
parameter that can change the answer, normalised (JSON with sorted keys,
numbers as floats). What cannot change it is left out: `stream` (a streamed
request is answered from a body's entry and the other way round), `user`,
`metadata`.

When a request uses it (`cache_policy`): its route turns the cache on in the
admin, with a TTL, for requests sampled at or below its temperature; a
request asks for it on any route or model (`"cache": true` in its
`metadata`), or refuses it (`"cache": false`, or `cache-control: no-cache`).

The web reads the entry once a /v1 call is admitted (`cache_read`, in the
round trip that takes its rate limits), and answers a hit itself
(routing/calls/cache_hits.py). A miss goes to a worker, which looks again
(routing/calls/runner.py, `CacheFlight`): the entry, or else the key's
claim (with a lease), in one script; then runs the call. Only an answer
that ended well is stored, with the claim released in the same script. An
identical call that finds the key claimed marks the key as waited for and
waits on the key's ready stream, to which storing or releasing the claim
then adds an entry (through the process's stream hub,
fastpath/stream_hub.py: one blocking read for all its waiters), at most
until the claim's lease ends, and looks again; it runs
itself once the claim goes away with nothing stored (the first call failed,
or its worker died and the lease lapsed). A Redis that is away or flushed
is a miss: the cache never fails a call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from routing.catalog import Catalog
from routing.providers.types import ChatRequest
from switchyard.redis_clients import get_resp, get_stream_hub

logger = logging.getLogger(__name__)

CACHE_PREFIX = "cache:"
KEY_PREFIX = f"{CACHE_PREFIX}answer:"
CLAIM_PREFIX = f"{CACHE_PREFIX}claim:"
READY_PREFIX = f"{CACHE_PREFIX}ready:"
WAITING_PREFIX = f"{CACHE_PREFIX}waiting:"
# OpenAI's default temperature: a request that sets none is sampled at it.
DEFAULT_TEMPERATURE = 1.0
# A waiter looks again this long after the claim's lease ends, so that the claim is gone by then.
LAPSE_MARGIN_SECONDS = 0.005
# The answer is stored and the claim released together, only by the claim's holder; the waiters, if
# any, are told (most answers have none: then the ready stream is not even made).
_STORE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 'e', 'stored')
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
return 1
"""
# One round trip: the answer if stored; else the claim, taken (1) or held by another call: then the
# claim's time to live (ms) and the ready stream's last entry, after which its waiter waits, and the
# key is marked as waited for. A call delivered again after its worker died finds the claim it made
# itself: it is still its own.
_LOOKUP = """
local answer = redis.call('GET', KEYS[1])
if answer then
  return answer
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then
  redis.call('SET', KEYS[4], 1, 'PX', ARGV[2])
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  return {redis.call('PTTL', KEYS[2]), last[1] and last[1][1] or '0-0'}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('XADD', KEYS[2], 'MAXLEN', 1, '*', 'e', 'released')
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
  return 1
end
return 0
"""

_PARAMETERS = (
    "system",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "sampling_seed",
    "max_tokens",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
)


@dataclass(frozen=True, slots=True)
class CacheUse:
    """How one call uses the cache: its entry's key and how long an answer it stores lasts."""

    key: str
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer that ended well, as stored: enough to replay it and to book it at its saving."""

    model: str
    provider: str
    text: str
    finish: str
    tool_calls: tuple[dict[str, str], ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    tokens_estimated: bool = False

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: bytes | str) -> CachedAnswer:
        data = json.loads(raw)
        data["tool_calls"] = tuple(data.get("tool_calls", ()))
        return cls(**data)


def cache_policy(
    catalog: Catalog, *, route: str, target: str, request: ChatRequest, scope: str, wish: bool | None
) -> CacheUse | None:
    """How a call uses the cache, or None when it does not.

    `target` is the route or model id asked for; `request` the request as the
    client sent it; `scope` the caller's (cache_scope); `wish` the request's own.
    """
    if wish is False:
        return None
    settings_of = catalog.routes.get(route)
    if wish is None:
        if settings_of is None or not settings_of.cache_enabled:
            return None
        ceiling = settings_of.cache_max_temperature
        temperature = request.temperature
        if temperature is None:
            temperature = settings_of.temperature if settings_of.temperature is not None else DEFAULT_TEMPERATURE
        if ceiling is not None and temperature > ceiling:
            return None
    ttl = settings_of.cache_ttl_seconds if settings_of is not None else settings.CACHE_DEFAULT_TTL_SECONDS
    return CacheUse(cache_key(scope=scope, target=target, request=request), ttl)


def cache_scope(*, team_id: int | None, user_id: int | None) -> str:
    """Whose answers a caller may be served: its team's, or a teamless user's own."""
    return f"team:{team_id}" if team_id is not None else f"user:{user_id}"


def cache_key(*, scope: str, target: str, request: ChatRequest) -> str:
    """The key of a request's entry: a hash of everything that can change its answer."""
    data = dataclasses.asdict(request)
    fingerprint = {
        "scope": scope,
        "target": target,
        "messages": [_normalised(message) for message in data["messages"]],
        **{name: _normalised(data[name]) for name in _PARAMETERS},
    }
    encoded = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return KEY_PREFIX + hashlib.sha256(encoded.encode()).hexdigest()


def _normalised(value: Any) -> Any:
    """`value` with every number a float (0 and 0.0 ask the same) and every sequence a list."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalised(item) for item in value]
    return value


def claim_key(key: str) -> str:
    return CLAIM_PREFIX + key.removeprefix(KEY_PREFIX)


def ready_key(key: str) -> str:
    """The stream that tells the waiters of `key`'s claim that it was stored or released."""
    return READY_PREFIX + key.removeprefix(KEY_PREFIX)


def waiting_key(key: str) -> str:
    """Set while an identical call may wait for `key`'s answer: only then is the ready stream written."""
    return WAITING_PREFIX + key.removeprefix(KEY_PREFIX)


async def cache_read(key: str) -> CachedAnswer | None:
    """The answer stored under `key`, or None: a miss, or a Redis that could not be read (logged)."""
    try:
        found = await get_resp().execute("GET", key)
        return None if found is None else CachedAnswer.loads(found)
    except (redis.RedisError, OSError, ValueError, TypeError):
        logger.warning("the response cache could not be read; the call runs", exc_info=True)
        return None


class CacheFlight:
    """One call's use of the cache in the worker: find the answer, or claim the key, run, and store."""

    def __init__(self, use: CacheUse, owner: str) -> None:
        self.use = use
        self.owner = owner
        self.claimed = False

    async def answer(self, *, deadline: float) -> CachedAnswer | None:
        """The cached answer, waiting for an identical call in flight; None: this call must run (and has the claim).

        Waits at most the claim's lease, and never past `deadline` (monotonic).
        """
        lease = settings.CACHE_CLAIM_LEASE_SECONDS
        give_up = min(deadline, time.monotonic() + lease)
        keys = (self.use.key, claim_key(self.use.key), ready_key(self.use.key), waiting_key(self.use.key))
        try:
            client = get_resp()
            while True:
                found = await client.execute("EVAL", _LOOKUP, len(keys), *keys, self.owner, int(lease * 1000))
                if isinstance(found, bytes):
                    return CachedAnswer.loads(found)
                if found == 1:
                    self.claimed = True
                    return None
                claim_ttl_ms, last_ready = found
                left = give_up - time.monotonic()
                if left <= 0:
                    return None
                claim_left = lease if claim_ttl_ms < 0 else claim_ttl_ms / 1000 + LAPSE_MARGIN_SECONDS
                await _ready_or_timeout(keys[2], last_ready.decode(), min(left, claim_left))
        except (redis.RedisError, OSError, ValueError, TypeError):
            logger.warning("the response cache could not be read; the call runs", exc_info=True)
            return None

    async def store(self, answer: CachedAnswer) -> None:
        """Keep an answer that ended well for the key's TTL, and release the claim if this call holds it."""
        try:
            await get_resp().execute(
                "EVAL",
                _STORE,
                4,
                self.use.key,
                claim_key(self.use.key),
                ready_key(self.use.key),
                waiting_key(self.use.key),
                answer.dumps(),
                self.use.ttl_seconds,
                self.owner,
                _ready_ttl_ms(),
            )
            self.claimed = False
        except (redis.RedisError, OSError):
            logger.warning("could not store an answer in the response cache", exc_info=True)

    async def release(self) -> None:
        """Give the claim up with nothing stored, so that a waiting identical call runs at once."""
        if not self.claimed:
            return
        self.claimed = False
        try:
            await get_resp().execute(
                "EVAL",
                _RELEASE,
                3,
                claim_key(self.use.key),
                ready_key(self.use.key),
                waiting_key(self.use.key),
                self.owner,
                _ready_ttl_ms(),
            )
        except (redis.RedisError, OSError):
            logger.warning("could not release a response cache claim; it lapses with its lease", exc_info=True)


async def _ready_or_timeout(key: str, after: str, timeout: float) -> None:
    """Return once the ready stream at `key` has an entry after `after`, or after `timeout` seconds."""
    async with get_stream_hub().follow(key, after=after) as follower:
        await follower.entries(timeout=timeout)


def _ready_ttl_ms() -> int:
    # A waiter waits no longer than a lease: an older entry tells nobody anything.
    return int(settings.CACHE_CLAIM_LEASE_SECONDS * 1000)
