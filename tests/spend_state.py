"""What tests clear between them: the caps' state in Redis, for user and team ids that the next test reuses.

Counters are derived data that the code rebuilds from the database, and
reservations end with their calls, so dropping them loses nothing.
"""

from __future__ import annotations

from redis import Redis

from billing.caps.reservations import LEASES_KEY
from billing.caps.rules import VERSION_KEY, version_bump
from switchyard.redis_clients import get_redis


def spend_state_clear(redis: Redis | None = None) -> None:
    """Drop spend counters, reservations and the reconciliation's notes, and make every process reload caps.

    In the tests' own Redis, or in `redis` (a test stack's, whose processes reload caps once its version is gone).
    """
    client = redis or get_redis()
    for pattern in ("sy:spend:*", "sy:held:*", "sy:resv:*", "sy:reconcile:*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.delete(LEASES_KEY)
    if redis is None:
        version_bump()
    else:
        client.delete(VERSION_KEY)
