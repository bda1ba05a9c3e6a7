"""Retries of the same model before a call moves down its chain: exponential backoff with full jitter.

A route may try a model again after a failure that a moment may cure (the
failures its circuit counts: rate limited, overloaded, timed out,
unavailable), up to its `retry_attempts` times, waiting before retry n a
random time between 0 and `retry_base_delay_seconds` × 2^(n-1) (full
jitter: calls that failed together do not come back together), and at
least the provider's retry-after. Never once text has reached the client,
and never past the call's deadline: a wait that would end after it moves
the call down its chain instead. Each try is an attempt of its own in the
trace and the attempts header, and each failure counts against the model's
circuit, whose opening ends the retries. Nothing here outlives a call:
what one call learns of a failing model, others learn from its circuit
(circuits.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from routing.providers.errors import ProviderError
from routing.resilience.circuits import CIRCUIT_FAILURES


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A route's retries: how many after the first try, and the base of their backoff, in seconds."""

    attempts: int = 0
    base_delay_seconds: float = 0.5

    def delay(self, retry: int, error: ProviderError) -> float | None:
        """Seconds to wait before retry number `retry` (from 1) after `error`; None when none is due."""
        if retry > self.attempts or error.kind not in CIRCUIT_FAILURES:
            return None
        backoff = random.uniform(0, self.base_delay_seconds * 2 ** (retry - 1))
        return max(backoff, error.retry_after or 0.0)
