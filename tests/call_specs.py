"""Calls as the web hands them to the workers, for tests that run them without the web."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from routing.calls.spec import CallSpec
from routing.providers.types import ChatRequest, Message


def call_spec(model: str, *, prompt: str = "Hello!", **fields: Any) -> CallSpec:
    """A call of `model` alone with one user message; `fields` set or override the rest."""
    defaults: dict[str, Any] = {
        "call_id": f"chatcmpl-{uuid.uuid4().hex}",
        "created_at": timezone.now(),
        "requested": model,
        "chain": (model,),
        "request": ChatRequest(messages=(Message(role="user", content=prompt),)),
    }
    return CallSpec(**(defaults | fields))
