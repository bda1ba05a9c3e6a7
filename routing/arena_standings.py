"""The arena's standings (blind votes ranked per prompt category), shared by every process through Redis.

The playground ranks votes (playground/leaderboard.py) and publishes, per
scope, the standings the quality strategy reads (routing/strategies/quality.py):
a team's votes for calls booked to the team, a user's own teamless votes
for that user's teamless calls. Routing owns the key and its shape, so that
it never imports the playground; the playground writes here.

One hash, a field per scope ("team:3", "user:7"), whose value is JSON:

    {"at": ISO time,
     "categories": {"coding": {"votes": 14,
                               "models": {"sim/atlas": {"score": 1032.5, "low": 981.0, "high": 1090.2}}},
                    …}}

A web process reads only its caller's field, and keeps what it parsed while
the field's bytes stay the same. Publications race (one after each vote, one
each minute, from any worker): a publication whose votes were read earlier
never overwrites one read later, so the newest reading wins whatever the
order the writes arrive in. A flushed Redis means no standings until
the playground's next publication (every minute, and after each vote): the
strategy then uses its default model, and says so.
"""

from __future__ import annotations

import json
from typing import Any

from switchyard.redis_clients import get_redis, get_resp

KEY = "sy:arena-standings"
# Scopes whose parsed standings a process keeps; past it, it starts afresh rather than grow without end.
MAX_PARSED = 1000

_parsed: dict[str, tuple[bytes, dict[str, Any]]] = {}

# ISO times in UTC with one format compare as strings: the stored reading is kept when it is newer.
_STORE_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
    local ok, decoded = pcall(cjson.decode, current)
    if ok and type(decoded) == 'table' and type(decoded['at']) == 'string' and decoded['at'] > ARGV[2] then
        return 0
    end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def standings_scope(*, team_id: int | None, user_id: int | None) -> str:
    """Whose votes rank the models for a call: its team's, else its user's own teamless ones."""
    return f"team:{team_id}" if team_id is not None else f"user:{user_id}"


def arena_standings_store(scope: str, standings: dict[str, Any]) -> bool:
    """Store the scope's standings unless a reading newer than theirs ("at") is stored; True if stored."""
    encoded = json.dumps(standings, separators=(",", ":"))
    return bool(get_redis().eval(_STORE_IF_NEWER, 1, KEY, scope, standings["at"], encoded))


async def arena_standings_read(scope: str) -> dict[str, Any]:
    """The scope's latest standings, {} when it has none yet (or Redis lost them)."""
    raw = await get_resp().execute("HGET", KEY, scope)
    if not raw:
        return {}
    known = _parsed.get(scope)
    if known is None or known[0] != raw:
        if len(_parsed) >= MAX_PARSED:
            _parsed.clear()
        known = _parsed[scope] = (raw, json.loads(raw))
    return known[1]
