"""What a caller tells the routing strategies about a call, from the body's `metadata` or x-switchyard-* headers.

| hint | in `metadata` | header |
|---|---|---|
| tags (comma-separated) | `tags` | `x-switchyard-tags` |
| price ceiling in USD | `max_price` | `x-switchyard-max-price` |
| session, to stay on one model | `session_id` | `x-switchyard-session` |
| seconds to wait for an open circuit | `circuit_wait` | `x-switchyard-circuit-wait` |
| the response cache: use it or not | `cache` (`true`/`false`) | `cache-control: no-cache` (not) |

Tags from both places add up; for the others, the body wins over the header.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from django.conf import settings

from routing.gateway.openai_request import InvalidRequest
from routing.strategies.base import Hints
from routing.strategies.budget import parse_price

MAX_TAGS = 16
MAX_SESSION_CHARS = 200


def hints_from(metadata: Mapping[str, str], headers: Mapping[str, str]) -> Hints:
    """The hints of one request; InvalidRequest naming the field for a value that cannot be one."""
    raw_tags = ",".join(filter(None, (metadata.get("tags", ""), headers.get("x-switchyard-tags", ""))))
    tags = frozenset(tag.strip().lower() for tag in raw_tags.split(",") if tag.strip())
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"At most {MAX_TAGS} tags may be given.", "metadata.tags", "invalid_value")
    price_field, price = _first(metadata, "max_price", headers, "x-switchyard-max-price")
    max_price = None
    if price:
        max_price = parse_price(
            price, price_field, lambda message: InvalidRequest(message, price_field, "invalid_value")
        )
    _, session = _first(metadata, "session_id", headers, "x-switchyard-session")
    if len(session) > MAX_SESSION_CHARS:
        raise InvalidRequest(
            f"A session id may be at most {MAX_SESSION_CHARS} characters.", "metadata.session_id", "invalid_value"
        )
    wait_field, wait = _first(metadata, "circuit_wait", headers, "x-switchyard-circuit-wait")
    return Hints(
        tags=tags,
        max_price=max_price,
        session=session,
        circuit_wait=_seconds(wait, wait_field),
        cache=_cache_wish(metadata, headers),
    )


def _cache_wish(metadata: Mapping[str, str], headers: Mapping[str, str]) -> bool | None:
    """True or False when the caller asked for the response cache or against it; None: the route decides."""
    value = metadata.get("cache", "").strip().lower()
    if value and value not in ("true", "false"):
        raise InvalidRequest("'metadata.cache' must be true or false.", "metadata.cache", "invalid_value")
    if value == "false" or "no-cache" in headers.get("cache-control", "").lower():
        return False
    return True if value == "true" else None


def _seconds(value: str, field: str) -> float:
    """A wait in seconds, within the call's deadline; 0 when not given."""
    if not value:
        return 0.0
    limit = settings.CALL_DEADLINE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 <= seconds <= limit:
        raise InvalidRequest(
            f"'{field}' must be a number of seconds from 0 to {limit} (the call's deadline).", field, "invalid_value"
        )
    return seconds


def _first(metadata: Mapping[str, str], key: str, headers: Mapping[str, str], header: str) -> tuple[str, str]:
    """Where the hint was given (for an error to name) and its value; the body first."""
    if metadata.get(key, "").strip():
        return f"metadata.{key}", metadata[key].strip()
    return header, headers.get(header, "").strip()
