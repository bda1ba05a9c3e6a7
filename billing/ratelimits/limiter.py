"""Whether a call may start under its caller's rate limits, decided and counted in one Lua script (GCRA).

The generic cell rate algorithm keeps one time per limit, the theoretical
arrival time (TAT): each request (or token) moves it on by 60 s / limit,
and a call is allowed while the TAT stays within a minute of now. It is a
sliding window with no edge: a limit of 60 per minute never lets 120
through across a minute's boundary, as a fixed counter per minute would,
and it needs one key per limit, whatever the traffic. Redis's own clock
(TIME) is the clock, so every process counts alike.

Every limit that applies (the user's, the team's, the key's, or the
team's limit for each key when the key has none of its own; requests and
tokens each) is checked, and only if all allow the call are all moved on:
a refused call takes nothing. Tokens are counted at admission: the
prompt's (tokens.request_tokens_at_once) and the request's max_tokens.

When Redis is unreachable the call is let through (and a warning logged):
a rate limit protects a provider's quota, and an outage of ours should not
add to it by refusing every call. Spend caps, which guard money, refuse.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis
from asgiref.sync import sync_to_async

from billing.ratelimits.config import LOADED_KEY, conf_key, rate_limits_publish
from fastpath.single_flight import SingleFlight
from switchyard.redis_clients import get_resp

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
SUBJECTS = ("user", "team", "key")
KINDS = ("requests", "tokens")
_publishes: SingleFlight[str, None] = SingleFlight()

_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local function conf(k)
  local v = redis.call('HMGET', k, 'rpm', 'tpm')
  return {tonumber(v[1]) or 0, tonumber(v[2]) or 0}
end
local confs = {conf(KEYS[2]), conf(KEYS[3]), conf(KEYS[4])}
local tats = {{KEYS[6], KEYS[7]}, {KEYS[8], KEYS[9]}, {KEYS[10], KEYS[11]}}
if confs[3][1] == 0 and confs[3][2] == 0 then
  confs[3] = conf(KEYS[5])
  tats[3] = {KEYS[12], KEYS[13]}
end
local limits = {}
for s = 1, 3 do
  for k = 1, 2 do
    if confs[s][k] > 0 then
      table.insert(limits, {tats[s][k], confs[s][k], want[k], s, k})
    end
  end
end
if want[2] < 0 then
  for _, l in ipairs(limits) do
    if l[5] == 2 then return {-2} end
  end
end
local moved = {}
for i, l in ipairs(limits) do
  local tat = tonumber(redis.call('GET', l[1])) or now
  if tat < now then tat = now end
  local next_tat = tat + l[3] * 60000 / l[2]
  if next_tat - now > 60000 then
    return {0, l[4], l[5], l[2], math.ceil(next_tat - now - 60000)}
  end
  moved[i] = next_tat
end
local out = {1}
for i, l in ipairs(limits) do
  redis.call('SET', l[1], string.format('%.3f', moved[i]), 'PX', math.ceil(moved[i] - now) + 1000)
  local left = math.floor((60000 - (moved[i] - now)) * l[2] / 60000)
  for _, v in ipairs({l[4], l[5], l[2], left, math.ceil(moved[i] - now)}) do table.insert(out, v) end
end
return out
"""


@dataclass(frozen=True)
class RateRefusal:
    subject: str
    kind: str
    limit: int
    asked: int
    retry_after_ms: int

    @property
    def hopeless(self) -> bool:
        """The call asks for more than the limit allows in a whole minute: waiting will not help."""
        return self.asked > self.limit

    @property
    def message(self) -> str:
        per = f"{self.limit} {self.kind} per minute"
        if self.hopeless:
            return (
                f"This request needs {self.asked} tokens (its prompt and max_tokens), more than the {self.subject}'s "
                f"limit of {per}: lower max_tokens or shorten the prompt."
            )
        return f"Rate limit reached for the {self.subject}: {per}. Please try again in {duration(self.retry_after_ms)}."


@dataclass(frozen=True)
class RateCheck:
    refusal: RateRefusal | None = None
    # The x-ratelimit-* headers of an allowed call, as OpenAI sends them: the tightest limit of each kind.
    headers: dict[str, str] = field(default_factory=dict)


async def rate_limits_take(
    *,
    user_id: int | None,
    team_id: int | None,
    api_key_id: int | None,
    requests: int,
    tokens: Callable[[], Awaitable[int]],
) -> RateCheck:
    """Count a call's requests and tokens against every limit of its caller, or refuse it and count nothing.

    `tokens` counts them, and is awaited only when a tokens-per-minute limit applies: most callers have
    none, and their calls are not tokenized for it.
    """
    keys = [
        LOADED_KEY,
        conf_key("user", user_id),
        conf_key("team", team_id),
        conf_key("key", api_key_id),
        conf_key("teamkeys", team_id),
        # The times of each limit; a key under its team's limit for each key keeps its own times for it.
        *(
            f"sy:rl:tat:{subject}:{subject_id or 0}:{kind}"
            for subject, subject_id in (
                *zip(SUBJECTS, (user_id, team_id, api_key_id), strict=True),
                ("teamkey", api_key_id),
            )
            for kind in KINDS
        ),
    ]
    counted = -1
    try:
        reply = await _take(keys, requests, counted)
        if reply[0] == -1:
            await _publishes.run("publish", sync_to_async(rate_limits_publish))
            reply = await _take(keys, requests, counted)
        if reply[0] == -2:
            counted = await tokens()
            reply = await _take(keys, requests, counted)
    except redis.RedisError:
        logger.warning("rate limits unchecked: Redis is unreachable")
        return RateCheck()
    if reply[0] == 0:
        subject, kind = SUBJECTS[reply[1] - 1], KINDS[reply[2] - 1]
        asked = requests if kind == "requests" else counted
        return RateCheck(refusal=RateRefusal(_subject_words(subject), kind, int(reply[3]), asked, int(reply[4])))
    return RateCheck(headers=_headers(reply[1:]))


async def _take(keys: list[str], requests: int, tokens: int) -> list[int]:
    reply: list[int] = await get_resp().execute("EVAL", _TAKE, len(keys), *keys, requests, tokens)
    return reply


def _headers(flat: list[int]) -> dict[str, str]:
    tightest: dict[str, tuple[int, int, int]] = {}
    for i in range(0, len(flat), 5):
        kind, limit, left, reset_ms = KINDS[flat[i + 1] - 1], int(flat[i + 2]), int(flat[i + 3]), int(flat[i + 4])
        if kind not in tightest or left < tightest[kind][1]:
            tightest[kind] = (limit, max(left, 0), reset_ms)
    headers = {}
    for kind, (limit, left, reset_ms) in tightest.items():
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(left)
        headers[f"x-ratelimit-reset-{kind}"] = duration(reset_ms)
    return headers


def duration(ms: int) -> str:
    """A wait as OpenAI's headers write it: "20ms", "1.5s", "6m0s"."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes = int(seconds // 60)
    return f"{minutes}m{math.ceil(seconds - minutes * 60)}s"


def _subject_words(subject: str) -> str:
    return {"user": "user", "team": "team", "key": "API key"}[subject]
