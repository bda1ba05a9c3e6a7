"""The classifier strategy's model call (routing/strategies/classifier.py), made before its route is resolved.

The chain depends on the answer, so the web process asks the classifier
itself, within the route's timeout, through the model's adapter and circuit,
and caches the answer in Redis for identical prompts (CACHE_SECONDS). Its
tokens and cost travel with the call (CallSpec.extra_costs) and are booked
with it. Anything that goes wrong (a timeout, an error, an open circuit, an
answer that names no category) leaves the decision to the local scorer: a
classifier never fails a call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
import time
from typing import Any

import redis

from billing.services import price_of, tokens_cost
from routing import tokens
from routing.catalog import Catalog, CatalogModel, CatalogRoute
from routing.providers.errors import ProviderError
from routing.providers.registry import adapter_for
from routing.providers.types import ChatRequest, Message, StreamError, TextDelta, Usage
from routing.resilience.circuits import CircuitOpen, circuit_pass
from routing.strategies.classifier import local_classification
from routing.strategies.prompt_facts import last_user_text
from routing.strategies.sensitivity import keeps_no_data
from switchyard.redis_clients import get_resp

logger = logging.getLogger(__name__)

CACHE_PREFIX = "sy:classified:"
CACHE_SECONDS = 24 * 3600
# The prompt's head and tail are what the classifier reads: where the instruction of a long paste is.
HEAD_CHARS = 3000
TAIL_CHARS = 1000
ANSWER_TOKENS = 8
INSTRUCTION = (
    "Classify the user's message into exactly one of these categories: {names}. "
    "Reply with the category's name only, nothing else."
)


async def route_classified(
    catalog: Catalog,
    route: CatalogRoute,
    request: ChatRequest,
    call_id: str,
    now: dt.datetime,
    personal_data: tuple[str, ...],
) -> dict[str, Any]:
    """The route's category for this request: {"category", "by", …}, with "cost" when a model call was paid for.

    A request holding personal data goes to the classifier only if its provider keeps no data (sensitivity.py).
    """
    settings = route.settings
    categories: dict[str, str] = settings["categories"]
    text = last_user_text(request)
    key = _cache_key(settings["model"], categories, text)
    try:
        cached = await get_resp().execute("GET", key)
    except redis.RedisError:
        cached = None
    if cached:
        return {**json.loads(cached), "cached": True}
    model = catalog.models.get(settings["model"])
    if model is None or not model.usable:
        return local_classification(text, categories, "the classifier model is disabled")
    if personal_data and not keeps_no_data(model):
        return local_classification(text, categories, "personal data: not sent to a classifier that may keep it")
    try:
        passage = await circuit_pass(model, call_id)
    except CircuitOpen:
        return local_classification(text, categories, "the classifier's circuit is open")
    asked = ChatRequest(
        messages=(Message(role="user", content=_sample(text)),),
        system=INSTRUCTION.format(names=", ".join(categories)),
        temperature=0,
        max_tokens=ANSWER_TOKENS,
        seed=call_id,
    )
    started = time.monotonic()
    answer: list[str] = []
    usage: Usage | None = None
    error: ProviderError | None = None
    events = adapter_for(model.config()).stream(asked)
    try:
        async with asyncio.timeout(settings["timeout_ms"] / 1000):
            async for event in events:
                if isinstance(event, TextDelta):
                    answer.append(event.text)
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, StreamError):
                    error = event.error
    except TimeoutError:
        await passage.ended()
        return local_classification(text, categories, f"the classifier took over {settings['timeout_ms']} ms")
    finally:
        await events.aclose()
    if error is not None:
        await passage.failed(error)
        return local_classification(text, categories, f"the classifier failed: {error.message}")
    await passage.answered()
    said = "".join(answer).strip()
    elapsed_ms = int((time.monotonic() - started) * 1000)
    if usage is None:
        usage = Usage(
            input_tokens=await tokens.aestimate_request_tokens(asked),
            output_tokens=await tokens.aestimate_text_tokens(said),
            estimated=True,
        )
    cost = _cost(model, usage, now)
    category = _named(said, categories)
    if category is None:
        return {**local_classification(text, categories, f"the classifier said {said[:40]!r}"), "cost": cost}
    found = {"category": category, "by": model.public_id, "answer": said[:40], "ms": elapsed_ms}
    try:
        await get_resp().execute("SET", key, json.dumps(found), "EX", CACHE_SECONDS)
    except redis.RedisError:
        logger.warning("could not cache a classification; the next identical prompt asks again")
    return {**found, "cost": cost}


def _named(said: str, categories: dict[str, str]) -> str | None:
    """The category the answer names: the first of its words that is one."""
    words: list[str] = re.findall(r"[a-z0-9_-]+", said.lower())
    return next((word for word in words if word in categories), None)


def _sample(text: str) -> str:
    return text if len(text) <= HEAD_CHARS + TAIL_CHARS else f"{text[:HEAD_CHARS]}\n…\n{text[-TAIL_CHARS:]}"


def _cache_key(model: str, categories: dict[str, str], text: str) -> str:
    digest = hashlib.sha256(json.dumps([model, sorted(categories), text]).encode()).hexdigest()
    return CACHE_PREFIX + digest


def _cost(model: CatalogModel, usage: Usage, now: dt.datetime) -> dict[str, Any]:
    """What the classifier's call cost, for the call's booking (the runner adds it: CallSpec.extra_costs)."""
    price = price_of(model, now)
    cost = None
    if price is not None:
        cost = tokens_cost(price, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    return {
        "what": "classifier",
        "model": model.public_id,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": None if cost is None else str(cost),
    }
