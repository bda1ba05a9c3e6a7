"""What a caller tells the routing strategies about a call, from the body's `metadata` or x-switchyard-* headers.

| hint | in `metadata` | header |
|---|---|---|
| tags (comma-separated) | `tags` | `x-switchyard-tags` |
| price ceiling in USD | `max_price` | `x-switchyard-max-price` |
| session, to stay on one model | `session_id` | `x-switchyard-session` |

Tags from both places add up; for the other two, the body wins over the header.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    return Hints(tags=tags, max_price=max_price, session=session)


def _first(metadata: Mapping[str, str], key: str, headers: Mapping[str, str], header: str) -> tuple[str, str]:
    """Where the hint was given (for an error to name) and its value; the body first."""
    if metadata.get(key, "").strip():
        return f"metadata.{key}", metadata[key].strip()
    return header, headers.get(header, "").strip()
