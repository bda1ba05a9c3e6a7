"""One error taxonomy for every provider.

Every adapter maps its provider's statuses, error bodies and transport
failures into a ProviderError of one of these kinds:

    ProviderError
    ├── retryable: the next model in a fallback chain may succeed
    │   ├── rate_limited      429 / RESOURCE_EXHAUSTED; carries retry_after
    │   ├── overloaded        503 "overloaded", Anthropic 529, overloaded_error
    │   ├── timeout           connect timeout, no byte within the read timeout
    │   ├── unavailable       other 5xx, connection refused or cut, malformed stream
    │   ├── context_too_long  the prompt does not fit: a larger window may
    │   └── circuit_open      not sent: the model's or its provider's circuit is
    │                         open (routing/resilience/circuits.py); carries retry_after
    └── permanent: trying another model would fail the same way, or the
        │          provider refuses this account
        ├── bad_request       400 / INVALID_ARGUMENT that is not about length
        ├── auth              401 / 403, a bad or missing key, quota exhausted
        └── content_filtered  the provider blocked the prompt or the answer

`auth` is permanent for the provider that raised it, not for the chain: a
model of another provider (another key) may still answer.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
from collections.abc import Mapping


class ErrorKind(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    CONTEXT_TOO_LONG = "context_too_long"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    CONTENT_FILTERED = "content_filtered"
    CIRCUIT_OPEN = "circuit_open"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE

    @property
    def label(self) -> str:
        return _LABELS[self]


_RETRYABLE = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.TIMEOUT,
        ErrorKind.UNAVAILABLE,
        ErrorKind.CONTEXT_TOO_LONG,
        ErrorKind.CIRCUIT_OPEN,
    }
)

_LABELS = {
    ErrorKind.RATE_LIMITED: "rate limited by the provider",
    ErrorKind.OVERLOADED: "provider overloaded",
    ErrorKind.TIMEOUT: "timed out",
    ErrorKind.UNAVAILABLE: "provider unavailable",
    ErrorKind.CONTEXT_TOO_LONG: "prompt too long for the model",
    ErrorKind.BAD_REQUEST: "request refused by the provider",
    ErrorKind.AUTH: "provider refused our credentials",
    ErrorKind.CONTENT_FILTERED: "blocked by the provider's content filter",
    ErrorKind.CIRCUIT_OPEN: "skipped: its circuit is open",
}


class ProviderError(Exception):
    """A provider call failed. `message` is safe to show: it never holds a key."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.provider_code = provider_code

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def __repr__(self) -> str:
        return f"ProviderError({self.kind.value!r}, {self.message!r}, status_code={self.status_code})"


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if ms := lowered.get("retry-after-ms"):
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)
