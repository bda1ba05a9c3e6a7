"""Authentication of /v1 calls by API key, on the hot path.

Active keys are cached in a Redis hash (key hash -> principal), so that N web
processes agree at once when a key is revoked (billing/signals.py drops the
entry) and a call costs one HGET instead of a database query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.utils import timezone

from billing.models import ApiKey
from billing.services import API_KEY_PREFIX, api_key_hash
from switchyard.redis_clients import get_redis, get_resp

CACHE_KEY = "sy:apikeys"
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
    cached = await redis.execute("HGET", CACHE_KEY, hashed)
    if cached is not None:
        return Principal(**json.loads(cached))
    principal = await sync_to_async(_load)(hashed)
    if principal is not None:
        await redis.execute("HSET", CACHE_KEY, hashed, json.dumps(_as_dict(principal)))
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


def forget(hashed: str) -> None:
    get_redis().hdel(CACHE_KEY, hashed)
