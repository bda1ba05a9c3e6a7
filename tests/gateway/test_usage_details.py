"""Usage that matches the provider's bill: cached input, cache writes and reasoning, booked and reported by /v1.

Each provider kind answers from its fake upstream with a recorded body
whose usage carries cache and reasoning counts (the variants in
tests/fakes/), a real worker books the call, and the OpenAI SDK reads the
answer. Each expected cost is the provider's own billing formula, worked
out here by hand from the counts in those bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai.types import CompletionUsage

from billing.models import UsageRecord
from billing.money import usage_cost
from routing.models import LanguageModel, ModelPrice, Provider
from routing.services import model_price_set
from tests.fakes import anthropic as fake_anthropic
from tests.fakes import gemini as fake_gemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeUpstream, Reply
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello!"}]
MILLION = Decimal(1_000_000)
TEN_DECIMALS = Decimal("0.0000000001")

# USD per million tokens. OpenAI's gpt-4o-mini (the gateway registry's
# up/gpt-4o-mini): input, cached input, output.
GPT_IN, GPT_CACHED, GPT_OUT = Decimal("0.15"), Decimal("0.075"), Decimal("0.60")
# Anthropic's Claude Sonnet 4: input, 5-minute cache writes, cache reads, output.
SONNET_IN, SONNET_WRITE, SONNET_READ, SONNET_OUT = Decimal("3"), Decimal("3.75"), Decimal("0.30"), Decimal("15")
# A Gemini model's input, cached input and output (thinking included).
GEMINI_IN, GEMINI_CACHED, GEMINI_OUT = Decimal("0.30"), Decimal("0.03"), Decimal("2.50")


@dataclass(frozen=True)
class Bill:
    """A call's answer, the counts the record must hold, and what the provider bills for it."""

    model: str
    reply: Callable[[], Reply]
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: Decimal


# prompt_tokens 2006 of which cached_tokens 1920; completion_tokens 138 of
# which reasoning_tokens 128. OpenAI bills the prompt tokens not cached at
# the input price, the cached ones at the cached price, and every completion
# token, reasoning included, at the output price.
OPENAI_COST = ((2006 - 1920) * GPT_IN + 1920 * GPT_CACHED + 138 * GPT_OUT) / MILLION
# Anthropic bills input_tokens, cache_creation_input_tokens,
# cache_read_input_tokens and output_tokens each at its own price; the first
# three are all input. Streamed: 377 fresh, 1024 written, 4096 read, 65 out.
ANTHROPIC_STREAM_COST = (377 * SONNET_IN + 1024 * SONNET_WRITE + 4096 * SONNET_READ + 65 * SONNET_OUT) / MILLION
# Not streamed: 12 fresh, 1024 written, 4096 read, 6 out.
ANTHROPIC_MESSAGE_COST = (12 * SONNET_IN + 1024 * SONNET_WRITE + 4096 * SONNET_READ + 6 * SONNET_OUT) / MILLION
# Gemini's cachedContentTokenCount is a part of promptTokenCount, billed at
# the cached price; thoughtsTokenCount is billed as output, besides
# candidatesTokenCount. Streamed: prompt 4106 of which 4096 cached, 48
# candidates and 540 thoughts.
GEMINI_STREAM_COST = ((4106 - 4096) * GEMINI_IN + 4096 * GEMINI_CACHED + (48 + 540) * GEMINI_OUT) / MILLION
# Not streamed: prompt 4103 of which 4096 cached, 22 candidates and 100 thoughts.
GEMINI_RESPONSE_COST = ((4103 - 4096) * GEMINI_IN + 4096 * GEMINI_CACHED + (22 + 100) * GEMINI_OUT) / MILLION

BILLS = {
    ("openai", "streamed"): Bill("up/gpt-4o-mini", FakeOpenAI.cached_stream, 2006, 138, 1920, 0, 128, OPENAI_COST),
    ("openai", "unstreamed"): Bill(
        "up/gpt-4o-mini", FakeOpenAI.cached_completion, 2006, 138, 1920, 0, 128, OPENAI_COST
    ),
    ("anthropic", "streamed"): Bill(
        "claude/claude-sonnet-4",
        fake_anthropic.cached_tool_use_stream,
        377 + 1024 + 4096,
        65,
        4096,
        1024,
        0,
        ANTHROPIC_STREAM_COST,
    ),
    ("anthropic", "unstreamed"): Bill(
        "claude/claude-sonnet-4",
        fake_anthropic.cached_message,
        12 + 1024 + 4096,
        6,
        4096,
        1024,
        0,
        ANTHROPIC_MESSAGE_COST,
    ),
    ("gemini", "streamed"): Bill(
        "gem/gemini-2.5-flash",
        fake_gemini.cached_thinking_stream,
        4106,
        48 + 540,
        4096,
        0,
        540,
        GEMINI_STREAM_COST,
    ),
    ("gemini", "unstreamed"): Bill(
        "gem/gemini-2.5-flash",
        fake_gemini.cached_thinking_response,
        4103,
        22 + 100,
        4096,
        0,
        100,
        GEMINI_RESPONSE_COST,
    ),
}


@pytest.fixture
def fakes(
    registry: dict[str, Any], upstream: FakeOpenAI, other_upstreams: dict[str, tuple[FakeUpstream, str]]
) -> dict[str, FakeUpstream]:
    """The gateway registry, with an Anthropic and a Gemini model priced as above and a free Ollama model."""
    prices: dict[str, tuple[Decimal, Decimal, Decimal, Decimal | None] | None] = {
        "anthropic": (SONNET_IN, SONNET_OUT, SONNET_READ, SONNET_WRITE),
        "gemini": (GEMINI_IN, GEMINI_OUT, GEMINI_CACHED, None),
        "ollama": None,
    }
    for kind, public_id in (
        ("anthropic", "claude/claude-sonnet-4"),
        ("gemini", "gem/gemini-2.5-flash"),
        ("ollama", "llama/llama3.2"),
    ):
        fake, url = other_upstreams[kind]
        fake.reset()
        name, upstream_name = public_id.split("/")
        provider = Provider(name=name, kind=kind, base_url=url)
        provider.set_api_key(f"{kind}-upstream-secret")
        provider.save()
        model = LanguageModel.objects.create(
            public_id=public_id,
            provider=provider,
            upstream_name=upstream_name,
            context_window=200_000,
            max_output_tokens=8_192,
            free=prices[kind] is None,
        )
        if (price := prices[kind]) is not None:
            ModelPrice.objects.create(
                model=model,
                input_per_million=price[0],
                output_per_million=price[1],
                cached_input_per_million=price[2],
                cache_write_per_million=price[3],
            )
    return {"openai": upstream, **{kind: fake for kind, (fake, _) in other_upstreams.items()}}


def _call(client: openai.OpenAI, model: str, *, stream: bool) -> tuple[str, CompletionUsage]:
    """Make the call through the SDK: the id of its usage record, and the usage its answer reported."""
    if stream:
        streamed = client.chat.completions.with_raw_response.create(
            model=model, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        usage = list(streamed.parse())[-1].usage
        request_id = streamed.headers["x-request-id"]
    else:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO)
        usage = raw.parse().usage
        request_id = raw.headers["x-request-id"]
    assert usage is not None
    return request_id, usage


def _details(usage: CompletionUsage) -> tuple[int | None, int | None]:
    """(cached_tokens, reasoning_tokens) as the SDK reads them."""
    assert usage.prompt_tokens_details is not None and usage.completion_tokens_details is not None
    return usage.prompt_tokens_details.cached_tokens, usage.completion_tokens_details.reasoning_tokens


@pytest.mark.parametrize(("kind", "streamed"), list(BILLS), ids=["-".join(case) for case in BILLS])
def test_a_call_with_cached_input_is_booked_at_what_the_provider_bills(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream], kind: str, streamed: str
) -> None:
    bill = BILLS[kind, streamed]
    fakes[kind].queue(bill.reply())

    request_id, usage = _call(client, bill.model, stream=streamed == "streamed")

    record = booked(request_id)

    assert (record.status, record.model, record.tokens_estimated) == ("ok", bill.model, False)
    assert (
        record.input_tokens,
        record.output_tokens,
        record.cached_input_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
    ) == (
        bill.input_tokens,
        bill.output_tokens,
        bill.cached_input_tokens,
        bill.cache_write_tokens,
        bill.reasoning_tokens,
    )
    assert record.cost_usd == bill.cost.quantize(TEN_DECIMALS)
    assert record.cost_usd == _cost_of(record)
    assert (usage.prompt_tokens, usage.completion_tokens) == (bill.input_tokens, bill.output_tokens)
    assert _details(usage) == (bill.cached_input_tokens, bill.reasoning_tokens)
    assert usage.model_extra is not None
    assert Decimal(str(usage.model_extra["cost"])) == record.cost_usd


@pytest.mark.parametrize("stream", [False, True], ids=["unstreamed", "streamed"])
@pytest.mark.parametrize("model", ["llama/llama3.2", "sim/swift", "up/gpt-4o-mini"])
def test_every_provider_kind_reports_the_details_of_its_usage_as_openai_does(
    client: openai.OpenAI, fakes: dict[str, FakeUpstream], model: str, stream: bool
) -> None:
    """Zero where the provider counts no cache or reasoning (Ollama, the simulated models, an uncached prompt)."""
    request_id, usage = _call(client, model, stream=stream)

    record = booked(request_id)
    assert (usage.prompt_tokens, usage.completion_tokens) == (record.input_tokens, record.output_tokens) != (0, 0)
    assert _details(usage) == (0, 0)


def test_a_price_changed_after_a_call_leaves_its_cost_and_prices_as_they_were(
    client: openai.OpenAI, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    upstream.queue(FakeOpenAI.cached_completion())
    first = booked(_call(client, "up/gpt-4o-mini", stream=False)[0])
    # Every price doubled.
    model_price_set(
        model=registry["models"]["gpt"],
        input_per_million=2 * GPT_IN,
        output_per_million=2 * GPT_OUT,
        cached_input_per_million=2 * GPT_CACHED,
    )
    upstream.queue(FakeOpenAI.cached_completion())

    second = booked(_call(client, "up/gpt-4o-mini", stream=False)[0])

    first.refresh_from_db()
    assert first.cost_usd == OPENAI_COST.quantize(TEN_DECIMALS)
    assert second.cost_usd == 2 * first.cost_usd
    for record, factor in ((first, 1), (second, 2)):
        prices = (
            record.input_price_per_million,
            record.cached_input_price_per_million,
            record.cache_write_price_per_million,
            record.output_price_per_million,
        )
        # A blank cache write price is booked as the input price, so the record alone tells its cost.
        assert prices == (factor * GPT_IN, factor * GPT_CACHED, factor * GPT_IN, factor * GPT_OUT)
        assert record.cost_usd == _cost_of(record)


def _cost_of(record: UsageRecord) -> Decimal:
    """A record's cost, from its own counts and unit prices."""
    assert record.input_price_per_million is not None and record.output_price_per_million is not None
    return usage_cost(
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cached_input_tokens=record.cached_input_tokens,
        cache_write_tokens=record.cache_write_tokens,
        input_per_million=record.input_price_per_million,
        output_per_million=record.output_price_per_million,
        cached_input_per_million=record.cached_input_price_per_million,
        cache_write_per_million=record.cache_write_price_per_million,
    )
