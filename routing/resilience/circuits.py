"""Circuit breakers, per model and per provider, shared by every process through Redis.

A model's circuit is closed until the model fails `circuit_failures` times
within `circuit_window_seconds` (its provider's settings in the admin: 3 in
60 s by default), counting only the failures that say the provider is in
trouble (CIRCUIT_FAILURES: rate limited, overloaded, timed out, unavailable,
which includes a stream cut before its end). It is then open: every route
and every worker skips the model, and a call that asked for it by id gets a
503 with retry-after, for `circuit_cooldown_seconds` (30 s by default), or
for the provider's retry-after when that is longer. Then it is half-open:
the first call to reach it is its probe, the only one in the whole
deployment (the others skip the model as if it were open); the probe's
first token, or any answer that is not such a failure, closes the circuit,
and its failure opens it again.

A provider's circuit counts its models' failures together, and opens when
they reach the same number within the window and come from more than one
model: one model's trouble (its own rate limit) is that model's, trouble
across models is the provider's, and its open circuit skips every model
of the provider.

Every change is one Lua script timed by Redis's clock, so every process
sees one state. A Redis that lost the keys (flushed, restarted without
persistence) has every circuit closed, and one that cannot be reached lets
calls through (with a warning in the log): a breaker never fails a call of
its own.

Keys, for a scope (`model` with a model's public id, `provider` with a
provider's name):

- `sy:circuit:<scope>:<name>`: a hash, present while the circuit is open or
  half-open: `until` (ms since the epoch, when it turns half-open),
  `opened_at`, `reason` (the error kind that opened it), and while a probe
  is out, `probe` (its call id) and `probe_until` (when another call may
  probe instead: the probe's provider timeouts have passed without a
  verdict). A half-open circuit that no call probes for
  HALF_OPEN_KEPT_SECONDS closes.
- `sy:circuit:<scope>:<name>:fails`: the recent failures, a sorted set by
  time (ms) of `<ms>|<call id>|<model>|<kind>`.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from routing.catalog import CatalogModel
from routing.providers.errors import ErrorKind, ProviderError
from switchyard.redis_clients import get_redis, get_resp

logger = logging.getLogger(__name__)

CIRCUIT_PREFIX = "sy:circuit:"
CIRCUIT_FAILURES = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE})
# A probe's verdict comes with its first token, so it needs its provider's
# connect and first-byte timeouts, and this much more.
PROBE_MARGIN_SECONDS = 5.0
HALF_OPEN_KEPT_SECONDS = 3600
# What a call turned away by another call's probe is told to wait.
PROBE_RETRY_SECONDS = 1.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: the model's circuit, the provider's. ARGV: call id, probe lease ms.
# Returns {0, probes model, probes provider} when the call may go (a 1 for
# each half-open circuit it now probes); {1, i, until, now} when circuit i
# is open; {2, i, probe_until, now} when circuit i is half-open and another
# call probes it.
_PASS = (
    _NOW
    + """
local probes = {0, 0}
for i = 1, 2 do
  local f = redis.call('HMGET', KEYS[i], 'until', 'probe', 'probe_until')
  if f[1] then
    local till = tonumber(f[1])
    if now < till then return {1, i, till, now} end
    if f[2] and f[2] ~= ARGV[1] and tonumber(f[3]) > now then return {2, i, tonumber(f[3]), now} end
    probes[i] = 1
  end
end
for i = 1, 2 do
  if probes[i] == 1 then
    redis.call('HSET', KEYS[i], 'probe', ARGV[1], 'probe_until', now + tonumber(ARGV[2]))
  end
end
return {0, probes[1], probes[2]}
"""
)

# KEYS: the model's circuit and failures, the provider's circuit and
# failures. ARGV: call id, model, error kind, failures that open, window ms,
# open ms (the cooldown or the retry-after, the longer), retry-after ms (0:
# none), ms a half-open circuit is kept. Returns, per circuit, 1 if this
# failure opened it.
_FAIL = (
    _NOW
    + """
local cid, model, kind = ARGV[1], ARGV[2], ARGV[3]
local threshold, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local open_ms, retry_ms, keep = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function open(h, till)
  redis.call('HSET', h, 'until', till, 'opened_at', now, 'reason', kind)
  redis.call('HDEL', h, 'probe', 'probe_until')
  redis.call('PEXPIRE', h, till - now + keep)
end
local function models_in(z)
  local seen, n = {}, 0
  for _, member in ipairs(redis.call('ZRANGE', z, 0, -1)) do
    local name = string.match(member, '^[^|]*|[^|]*|(.*)|[^|]*$')
    if name and not seen[name] then
      seen[name] = true
      n = n + 1
    end
  end
  return n
end
local opened = {0, 0}
for i = 1, 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZADD', z, now, now .. '|' .. cid .. '|' .. model .. '|' .. kind)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - window)
  redis.call('PEXPIRE', z, window)
  local f = redis.call('HMGET', h, 'until', 'probe')
  if f[1] then
    if f[2] == cid then
      open(h, now + open_ms)
      opened[i] = 1
    elseif retry_ms > 0 and now + retry_ms > tonumber(f[1]) then
      -- A call let through before the circuit opened: its retry-after still holds.
      redis.call('HSET', h, 'until', now + retry_ms)
      redis.call('PEXPIRE', h, retry_ms + keep)
    end
  elseif redis.call('ZCARD', z) >= threshold and (i == 1 or models_in(z) > 1) then
    open(h, now + open_ms)
    opened[i] = 1
  end
end
return opened
"""
)

# KEYS: the model's circuit and failures, the provider's. ARGV: call id, 1
# to close the circuits it probes, 0 to give their probe up without a verdict.
_PROBE_END = """
for i = 1, 2 do
  local h = KEYS[2 * i - 1]
  if redis.call('HGET', h, 'probe') == ARGV[1] then
    if ARGV[2] == '1' then
      redis.call('DEL', h, KEYS[2 * i])
    else
      redis.call('HDEL', h, 'probe', 'probe_until')
    end
  end
end
return 0
"""

# KEYS: a circuit. ARGV: open ms, ms a half-open circuit is kept.
_TRIP = (
    _NOW
    + """
local till = now + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'until', till, 'opened_at', now, 'reason', 'tripped')
redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
redis.call('PEXPIRE', KEYS[1], till - now + tonumber(ARGV[2]))
return till
"""
)


class Scope(enum.StrEnum):
    MODEL = "model"
    PROVIDER = "provider"


def circuit_key(scope: Scope, name: str) -> str:
    return f"{CIRCUIT_PREFIX}{scope}:{name}"


def failures_key(scope: Scope, name: str) -> str:
    return f"{circuit_key(scope, name)}:fails"


def _keys(model: CatalogModel) -> tuple[str, str, str, str]:
    return (
        circuit_key(Scope.MODEL, model.public_id),
        failures_key(Scope.MODEL, model.public_id),
        circuit_key(Scope.PROVIDER, model.provider_name),
        failures_key(Scope.PROVIDER, model.provider_name),
    )


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


class CircuitOpen(ProviderError):
    """The model was not called: its circuit, or its provider's, is open (or half-open and probed by another call)."""


class Passage:
    """A call let through to a model, and whether it probes a half-open circuit of the model's.

    The runner reports how the model did: `answered` at its first token or
    answer, `failed` after an error, `ended` when the attempt stopped without
    a verdict (cancelled). Only a failure, or a probe, costs a round trip to
    Redis.
    """

    __slots__ = ("call_id", "model", "probes")

    def __init__(self, model: CatalogModel, call_id: str, *, probes: bool) -> None:
        self.model = model
        self.call_id = call_id
        self.probes = probes

    async def answered(self) -> None:
        """The model answers: a probe closes its circuits, and other calls need not wait for its end."""
        await self._end_probe(closed=True)

    async def failed(self, error: ProviderError) -> None:
        """Count `error` against the model's circuits if it is a failure of theirs; else it closes what it probes."""
        if error.kind not in CIRCUIT_FAILURES:
            await self._end_probe(closed=True)
            return
        model = self.model
        retry_ms = int((error.retry_after or 0) * 1000)
        command = (
            "EVAL",
            _FAIL,
            4,
            *_keys(model),
            self.call_id,
            model.public_id,
            error.kind.value,
            model.circuit_failures,
            int(model.circuit_window_seconds * 1000),
            max(int(model.circuit_cooldown_seconds * 1000), retry_ms),
            retry_ms,
            HALF_OPEN_KEPT_SECONDS * 1000,
        )
        self.probes = False
        try:
            opened = await get_resp().execute(*command)
        except redis.RedisError as exc:
            logger.warning("could not count a failure of %s against its circuits: %s", model.public_id, exc)
            return
        for name, opened_now in zip((model.public_id, f"provider {model.provider_name}"), opened, strict=True):
            if opened_now:
                logger.warning("circuit of %s opened after %s: %s", name, error.kind.value, error.message)

    async def ended(self) -> None:
        """The attempt is over without a verdict (cancelled): a probe it held goes to the next call."""
        await self._end_probe(closed=False)

    async def _end_probe(self, *, closed: bool) -> None:
        if not self.probes:
            return
        self.probes = False
        try:
            await get_resp().execute("EVAL", _PROBE_END, 4, *_keys(self.model), self.call_id, int(closed))
        except redis.RedisError as exc:
            # The probe's lease lapses instead, and another call probes.
            logger.warning("could not end the circuit probe of %s: %s", self.model.public_id, exc)


async def circuit_pass(model: CatalogModel, call_id: str) -> Passage:
    """Let call `call_id` through to `model`, or raise CircuitOpen, with when to try again."""
    lease_ms = int((model.connect_timeout_seconds + model.timeout_seconds + PROBE_MARGIN_SECONDS) * 1000)
    try:
        reply = await get_resp().execute("EVAL", _PASS, 2, *_keys(model)[::2], call_id, lease_ms)
    except redis.RedisError as exc:
        logger.warning("circuits unreadable, %s let through: %s", model.public_id, exc)
        return Passage(model, call_id, probes=False)
    if reply[0] == 0:
        return Passage(model, call_id, probes=bool(reply[1] or reply[2]))
    status, which, until_ms, now_ms = reply
    whose = "circuit" if which == 1 else f"provider {model.provider_name}'s circuit"
    wait = max(until_ms - now_ms, 0) / 1000
    if status == 1:
        message = f"skipped: {whose} open until {_utc(until_ms):%H:%M:%S} UTC"
    else:
        message = f"skipped: {whose} half-open, another call probing it"
        # The probe's verdict comes with its first token, long before its lease lapses.
        wait = min(wait, PROBE_RETRY_SECONDS)
    raise CircuitOpen(ErrorKind.CIRCUIT_OPEN, message, retry_after=wait)


@dataclass(frozen=True, slots=True)
class Failure:
    at: dt.datetime
    model: str
    kind: str


@dataclass(frozen=True, slots=True)
class CircuitState:
    """What the admin shows of one circuit."""

    state: str  # "closed", "open" or "half-open"
    reopens_at: dt.datetime | None = None
    reason: str = ""
    probing: bool = False
    # Within the window, newest first.
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """`open until 12:03:41 UTC (rate_limited); 3 failures in the window`, in a line."""
        if self.state == "open" and self.reopens_at is not None:
            words = f"open until {self.reopens_at:%H:%M:%S} UTC ({self.reason})"
        elif self.state == "half-open":
            words = "half-open: " + ("a probe call is out" if self.probing else "the next call probes it")
        else:
            words = "closed"
        count = len(self.failures)
        if count:
            words += f"; {count} failure{'' if count == 1 else 's'} in the window"
        return words


def circuit_states(circuits: Sequence[tuple[Scope, str]], *, window_seconds: Sequence[float]) -> list[CircuitState]:
    """The state of each circuit, with its failures within its window (one round trip); closed if Redis is away."""
    client = get_redis()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for scope, name in circuits:
        pipe.hgetall(circuit_key(scope, name))
        pipe.zrange(failures_key(scope, name), 0, -1, desc=True, withscores=True)
    try:
        replies = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("circuits unreadable: %s", exc)
        return [CircuitState("closed") for _ in circuits]
    seconds, micros = replies[0]
    now_ms = seconds * 1000 + micros // 1000
    return [
        _state(replies[1 + 2 * i], replies[2 + 2 * i], now_ms, window_ms=int(window * 1000))
        for i, window in enumerate(window_seconds)
    ]


def _state(
    fields: dict[bytes, bytes], members: list[tuple[bytes, float]], now_ms: int, *, window_ms: int
) -> CircuitState:
    failures = tuple(_failure(member) for member, score in members if score > now_ms - window_ms)
    if not fields:
        return CircuitState("closed", failures=failures)
    until_ms = int(fields[b"until"])
    probing = int(fields.get(b"probe_until", 0)) > now_ms
    state = "open" if now_ms < until_ms else "half-open"
    return CircuitState(state, _utc(until_ms), fields.get(b"reason", b"").decode(), probing, failures)


def _failure(member: bytes) -> Failure:
    at, _, rest = member.decode().partition("|")
    _, _, rest = rest.partition("|")
    model, _, kind = rest.rpartition("|")
    return Failure(_utc(int(at)), model, kind)


def circuit_trip(*, scope: Scope, name: str, cooldown_seconds: float) -> dt.datetime:
    """Open a circuit for its cooldown, as if it had failed; when it turns half-open."""
    keep = HALF_OPEN_KEPT_SECONDS * 1000
    until_ms: int = get_redis().eval(_TRIP, 1, circuit_key(scope, name), int(cooldown_seconds * 1000), keep)
    return _utc(until_ms)


def circuit_reset(*, scope: Scope, name: str) -> None:
    """Close a circuit and forget its failures."""
    get_redis().delete(circuit_key(scope, name), failures_key(scope, name))
