"""Which rate limits apply to whom, published to Redis so that the limiter reads them in its own round trip.

One hash per limited subject, `sy:rl:conf:<kind>:<id>` with `rpm` and `tpm`
(0: no limit), where kind is user, team, key, or teamkeys (a team's limit
for each of its keys). Several enabled limits on one subject: the lowest of
each wins. `sy:rl:loaded` says the hashes are there: the limiter finds it
missing after a flush of Redis, and publishes again before it limits.
Publishing rewrites every hash (the table is small), after each change of a
limit in the admin, once its transaction commits.
"""

from __future__ import annotations

from django.db import transaction

from billing.models import RateLimit
from switchyard.redis_clients import get_redis

CONF_PREFIX = "sy:rl:conf:"
LOADED_KEY = "sy:rl:loaded"


def conf_key(kind: str, subject_id: int | None) -> str:
    return f"{CONF_PREFIX}{kind}:{subject_id or 0}"


def rate_limits_publish() -> None:
    """Write every enabled limit to Redis, replacing what was there."""
    limits: dict[str, dict[str, int]] = {}
    for row in RateLimit.objects.filter(enabled=True):
        if row.api_key_id is not None:
            key = conf_key("key", row.api_key_id)
        elif row.team_id is not None:
            key = conf_key("teamkeys" if row.per_key else "team", row.team_id)
        else:
            key = conf_key("user", row.user_id)
        conf = limits.setdefault(key, {"rpm": 0, "tpm": 0})
        for field, value in (("rpm", row.requests_per_minute), ("tpm", row.tokens_per_minute)):
            if value:
                conf[field] = min(conf[field], value) if conf[field] else value
    client = get_redis()
    stale = list(client.scan_iter(match=f"{CONF_PREFIX}*", count=1000))
    with client.pipeline(transaction=True) as pipe:
        if stale:
            pipe.delete(*stale)
        for key, conf in limits.items():
            pipe.hset(key, items=["rpm", conf["rpm"], "tpm", conf["tpm"]])
        pipe.set(LOADED_KEY, 1)
        pipe.execute()


def rate_limits_changed(**_: object) -> None:
    transaction.on_commit(rate_limits_publish)
