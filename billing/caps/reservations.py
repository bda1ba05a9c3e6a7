"""Reservations: the most a call in progress may still cost, held against its caller's caps until it ends.

A check of spent money alone lets every concurrent call through while the
last dollar is left. So before a call starts, its worst-case cost is
reserved against every capped counter of its caller in one Lua script: it
is taken only if, for each counter, spent + held + this reservation stays
within the cap. When the call ends, the same script that counts its real
cost releases its reservation (`spend_settle`), atomically: at no moment is
a call's cost counted twice or not at all.

Keys, beside each counter `sy:spend:<subject>:<period>:<start>`
(billing/caps/counters.py):

- `sy:held:<subject>:<period>:<start>`: the units reserved on it by calls in progress;
- `sy:resv:<call id>`: a hash with the call's `units` and the held keys it added them to;
- `sy:resv:leases`: a sorted set of call ids by the time (Redis's own clock,
  ms) their reservation lapses. A reservation lasts RESERVATION_QUEUE_SECONDS
  while its call waits for a worker; the worker that takes the call shortens
  it to its run lease and renews it while it runs (routing/calls/lease.py),
  so that a worker's death frees its calls' reservations within a run lease.
  Every reserve, and the minute's reconciliation (billing/caps/reconcile.py),
  first releases the reservations that lapsed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from fastpath.resp import Command
from switchyard.redis_clients import get_redis, get_resp

if TYPE_CHECKING:
    from billing.caps.counters import Counter

LEASES_KEY = "sy:resv:leases"
SPEND_PREFIX = "sy:spend:"
HELD_PREFIX = "sy:held:"
RESERVATION_PREFIX = "sy:resv:"

# Shared by the scripts below: release the reservation of call id `cid` (a no-op when it has none).
_RELEASE_FN = """
local function release(cid)
  local rkey = 'sy:resv:' .. cid
  local fields = redis.call('HGETALL', rkey)
  local units = 0
  if #fields > 0 then
    local held = {}
    for i = 1, #fields, 2 do
      if fields[i] == 'units' then units = tonumber(fields[i + 1])
      elseif fields[i] == 'held' then held = cjson.decode(fields[i + 1]) end
    end
    for _, hkey in ipairs(held) do
      if redis.call('EXISTS', hkey) == 1 and redis.call('DECRBY', hkey, units) <= 0 then
        redis.call('DEL', hkey)
      end
    end
    redis.call('DEL', rkey)
  end
  redis.call('ZREM', 'sy:resv:leases', cid)
  return units
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function purge(limit)
  local lapsed = redis.call('ZRANGEBYSCORE', 'sy:resv:leases', '-inf', now_ms(), 'LIMIT', 0, limit)
  for _, cid in ipairs(lapsed) do release(cid) end
  return #lapsed
end
"""

# KEYS: n counters, then their n held keys. ARGV: lease ms, n, the n limits
# (units), the n expiry times (unix s), then call id and units of each call.
# Returns {1} when every call is reserved; {0, i} when counter i is missing
# (the caller rebuilds it and tries again); {-1, i, spent, held, asked} when
# counter i has no room, and nothing is reserved.
_RESERVE = (
    _RELEASE_FN
    + """
purge(64)
local n = tonumber(ARGV[2])
local total = 0
for j = 3 + 2 * n, #ARGV, 2 do total = total + tonumber(ARGV[j + 1]) end
for i = 1, n do
  local spent = redis.call('GET', KEYS[i])
  if not spent then return {0, i} end
  local held = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  if tonumber(spent) + held + total > tonumber(ARGV[2 + i]) then
    return {-1, i, tonumber(spent), held, total}
  end
end
local lapse = now_ms() + tonumber(ARGV[1])
local heldkeys = {}
for i = 1, n do heldkeys[i] = KEYS[n + i] end
local encoded = cjson.encode(heldkeys)
for j = 3 + 2 * n, #ARGV, 2 do
  local cid, units = ARGV[j], tonumber(ARGV[j + 1])
  release(cid)
  redis.call('HSET', 'sy:resv:' .. cid, 'units', units, 'held', encoded)
  redis.call('ZADD', 'sy:resv:leases', lapse, cid)
  for i = 1, n do
    redis.call('INCRBY', KEYS[n + i], units)
    redis.call('EXPIREAT', KEYS[n + i], ARGV[2 + n + i])
  end
end
return {1}
"""
)

# KEYS: the counters a call's cost belongs to. ARGV: call id, units.
# Releases the call's reservation and adds its cost to the counters that
# exist. Returns the units that were reserved (0 if none).
_SETTLE = (
    _RELEASE_FN
    + """
local reserved = release(ARGV[1])
local units = tonumber(ARGV[2])
if units ~= 0 then
  for _, key in ipairs(KEYS) do
    if redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, units) end
  end
end
return reserved
"""
)

# ARGV: lease ms, then call ids. Sets each existing reservation to lapse a
# lease from now; returns 1 for each call that has one, 0 for each that has not.
_EXTEND = (
    _RELEASE_FN
    + """
local lapse = now_ms() + tonumber(ARGV[1])
local found = {}
for j = 2, #ARGV do
  found[j - 1] = redis.call('ZADD', 'sy:resv:leases', 'XX', 'CH', lapse, ARGV[j])
end
return found
"""
)

# KEYS: held keys found by a scan. Releases lapsed reservations, then sets
# every held key (those given and those the reservations name) to the sum of
# the live reservations on it. Returns how many reservations lapsed.
_REHOLD = (
    _RELEASE_FN
    + """
local lapsed = 0
repeat
  local n = purge(1000)
  lapsed = lapsed + n
until n < 1000
local sums = {}
for _, key in ipairs(KEYS) do sums[key] = 0 end
for _, cid in ipairs(redis.call('ZRANGE', 'sy:resv:leases', 0, -1)) do
  local fields = redis.call('HMGET', 'sy:resv:' .. cid, 'units', 'held')
  if fields[1] then
    for _, hkey in ipairs(cjson.decode(fields[2])) do
      sums[hkey] = (sums[hkey] or 0) + tonumber(fields[1])
    end
  else
    redis.call('ZREM', 'sy:resv:leases', cid)
  end
end
for key, sum in pairs(sums) do
  if sum > 0 then
    local ttl = redis.call('PTTL', key)
    redis.call('SET', key, sum)
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  else
    redis.call('DEL', key)
  end
end
return lapsed
"""
)


def held_key(counter: Counter) -> str:
    return HELD_PREFIX + counter.key.removeprefix(SPEND_PREFIX)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Why a reservation was refused: `counter` had `spent` + `held` units, and the calls asked `asked` more."""

    counter: Counter
    spent: int
    held: int
    asked: int


@dataclass(frozen=True, slots=True)
class Missing:
    """A counter vanished between the check and the reservation (a flush, an expiry): rebuild it and try again."""

    counter: Counter


def reserve_command(counters: Sequence[tuple[Counter, int]], calls: Sequence[tuple[str, int]]) -> Command:
    """The script that reserves `calls` ((call id, units)) against each (counter, limit in units), all or none."""
    held = [held_key(c) for c, _ in counters]
    return (
        "EVAL",
        _RESERVE,
        2 * len(counters),
        *(c.key for c, _ in counters),
        *held,
        settings.RESERVATION_QUEUE_SECONDS * 1000,
        len(counters),
        *(limit for _, limit in counters),
        *(c.expires_at for c, _ in counters),
        *(part for call_id, units in calls for part in (call_id, units)),
    )


async def reservations_take(
    counters: Sequence[tuple[Counter, int]], calls: Sequence[tuple[str, int]]
) -> Shortfall | Missing | None:
    """Reserve every call of `calls` on every counter, or none of them; None when they are reserved."""
    reply = await get_resp().execute(*reserve_command(counters, calls))
    if reply[0] == 1:
        return None
    counter = counters[reply[1] - 1][0]
    if reply[0] == 0:
        return Missing(counter)
    return Shortfall(counter, int(reply[2]), int(reply[3]), int(reply[4]))


def settle_command(call_id: str, counter_keys: Sequence[str], units: int) -> Command:
    """The script that releases a call's reservation and counts its real cost on the counters that exist."""
    return ("EVAL", _SETTLE, len(counter_keys), *counter_keys, call_id, units)


async def reservations_release(call_ids: Sequence[str]) -> None:
    """Release the reservations of calls that end without a cost to count."""
    if call_ids:
        await get_resp().pipeline([settle_command(call_id, [], 0) for call_id in call_ids])


def extend_command(call_ids: Sequence[str], lease: dt.timedelta) -> Command:
    """The script that makes the reservations of `call_ids` lapse `lease` from now (a 1 or 0 per call: held)."""
    return ("EVAL", _EXTEND, 0, int(lease.total_seconds() * 1000), *call_ids)


def reservations_rehold(held_keys: Sequence[str]) -> int:
    """Release lapsed reservations and set every held total to the sum of the live ones; how many lapsed."""
    lapsed: int = get_redis().eval(_REHOLD, len(held_keys), *held_keys)
    return lapsed
