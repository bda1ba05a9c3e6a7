"""The checks a cascade's answer must pass before it is sent (routing/strategies/cascade.py).

Local and cheap: they read the answer the worker held back, once, at its end.
"""

from __future__ import annotations

import json
import re
from typing import Any

from routing.providers.types import ChatRequest

# How refusals open, across the providers' house styles; read only at the answer's start.
_REFUSAL = re.compile(
    r"^\W*(?:i(?:'|’)?m sorry,? but |sorry,? but |unfortunately,? )?"
    r"(?:i|we)(?: am|'m|’m)? (?:can(?:'|’)?t|cannot|can not|won(?:'|’)?t|will not|am unable to|'m unable to"
    r"|’m unable to|unable to|am not able to|'m not able to|’m not able to) "
    r"(?:help|assist|provide|comply|do that|answer|fulfil|fulfill|support)",
    re.IGNORECASE,
)
REFUSAL_HEAD_CHARS = 200


def answer_failure(request: ChatRequest, text: str, finish: str, checks: dict[str, Any]) -> str:
    """Why the answer fails the cascade's checks, in words for the trace; "" when it passes."""
    if checks.get("truncated") and finish == "length":
        return "the answer stopped at its token limit"
    if checks.get("json") and request.response_format is not None and request.response_format.type != "text":
        try:
            json.loads(text)
        except ValueError:
            return "JSON was asked for, and the answer is not valid JSON"
    if checks.get("refusal") and _REFUSAL.match(text[:REFUSAL_HEAD_CHARS]):
        return "the answer is a refusal"
    least = checks.get("min_chars", 0)
    if least and len(text.strip()) < least:
        return f"the answer is too short ({len(text.strip())} characters, at least {least})"
    return ""
