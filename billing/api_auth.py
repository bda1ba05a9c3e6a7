"""Authentication of /v1 calls by API key, on the hot path.

Active keys are cached in Redis (one entry per key hash, holding its
principal), so that a call costs one GET instead of a database query and N
web processes agree on a key. Revoking or deleting a key, or deactivating
its user, drops its entry at once (billing/signals.py); a change the
signals do not see (`QuerySet.update`, a shell, another program writing the
database) takes effect when the entry expires, PRINCIPAL_CACHE_SECONDS
later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.utils import timezone

from billing.models import ApiKey
from billing.services import API_KEY_PREFIX, api_key_hash
from fastpath.single_flight import SingleFlight
from switchyard.redis_clients import get_redis, get_resp

PRINCIPAL_CACHE_SECONDS = 5

# The calls of one key that arrive while its principal is being read share the read.
_loads: SingleFlight[str, Principal | None] = SingleFlight()
# A key's last-used time is written at most this often.
LAST_USED_EVERY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    user_id: int
    team_id: int | None


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _load(hashed: str) -> Principal | None:
    key = ApiKey.objects.filter(hashed=hashed, revoked_at__isnull=True, user__is_active=True).first()
    if key is None:
        return None
    return Principal(key_id=key.pk, user_id=key.user_id, team_id=key.team_id)


def _touch(key_id: int) -> None:
    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


async def aauthenticate(raw_key: str) -> Principal | None:
    """The principal of an active key, or None; the caller then marks the key used (amark_used)."""
    if not raw_key.startswith(API_KEY_PREFIX):
        return None
    hashed = api_key_hash(raw_key)
    redis = get_resp()
    cached = await redis.execute("GET", cache_key(hashed))
    if cached is not None:
        return Principal(**json.loads(cached))
    principal = await _loads.run(hashed, lambda: sync_to_async(_load)(hashed))
    if principal is not None:
        entry = json.dumps(_as_dict(principal))
        await redis.execute("SET", cache_key(hashed), entry, "EX", PRINCIPAL_CACHE_SECONDS)
    return principal


async def amark_used(principal: Principal) -> None:
    """Keep the key's last-used time, writing it to the database at most once per LAST_USED_EVERY_SECONDS.

    Apart from aauthenticate so that a caller can send its Redis command
    together with the call's next ones, in one round trip.
    """
    used_key = f"sy:apikey:{principal.key_id}:used"
    if await get_resp().execute("SET", used_key, "1", "NX", "EX", LAST_USED_EVERY_SECONDS):
        await sync_to_async(_touch)(principal.key_id)


def _as_dict(principal: Principal) -> dict[str, int | None]:
    return {"key_id": principal.key_id, "user_id": principal.user_id, "team_id": principal.team_id}


def cache_key(hashed: str) -> str:
    return f"sy:apikey:{hashed}"


def forget(hashes: list[str]) -> None:
    """Drop the cached principals of these key hashes: their next call reads the database."""
    if hashes:
        get_redis().delete(*(cache_key(hashed) for hashed in hashes))
