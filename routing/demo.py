"""The demo registry: an offline simulated provider, real providers, and routes.

Loaded by `python manage.py load_demo` (routing/services.py:
demo_registry_load), which only creates what is missing.

Real providers' list prices are USD per 1M tokens (standard tier, no batch
discount, the lowest prompt-length tier), as best known on PRICES_CHECKED_ON;
check the providers' pricing pages before relying on them. Cache prices are
given only where the provider's published figure is known here: OpenAI's
cached input, Anthropic's cache reads and 5-minute cache writes (its 1-hour
writes cost more, and are not told apart). The others are blank, billed at
the input price. Rows are dated PRICES_CHECKED_ON unless a price history is
given.
The simulated models' options are read by routing/providers/simulated.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any, NamedTuple

PRICES_CHECKED_ON = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)
SIM_PRICES_FROM = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

CODE, VISION, JSON, TOOLS, LONG, MULTI = "code", "vision", "json", "tools", "long-context", "multilingual"


def _at(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


class Price(NamedTuple):
    """A row of a demo model's price book; a cache price of None is billed at the input price."""

    valid_from: dt.datetime
    input_per_million: D
    output_per_million: D
    cached_input_per_million: D | None = None
    cache_write_per_million: D | None = None


def _listed(
    input_per_million: str, output_per_million: str, *, cached: str | None = None, cache_write: str | None = None
) -> list[Price]:
    return [
        Price(
            PRICES_CHECKED_ON,
            D(input_per_million),
            D(output_per_million),
            None if cached is None else D(cached),
            None if cache_write is None else D(cache_write),
        )
    ]


SIMULATED: dict[str, Any] = {
    "name": "sim",
    "display_name": "Simulated (offline)",
    "kind": "simulated",
    "models": [
        {
            "name": "swift-mini",
            "display_name": "Swift Mini (fast, cheap)",
            "context_window": 32_768,
            "max_output_tokens": 4_096,
            "capabilities": [JSON, MULTI],
            "options": {
                "first_token_ms": 120,
                "tokens_per_second": 180,
                "output_tokens": 90,
                "style": "concise",
                "fail_rate": 0.0,
                "fail_mode": "rate_limit",
            },
            "prices": [Price(SIM_PRICES_FROM, D("0.10"), D("0.40"))],
        },
        {
            "name": "sage-pro",
            "display_name": "Sage Pro (slow, expensive, thorough)",
            "context_window": 200_000,
            "max_output_tokens": 16_384,
            "capabilities": [CODE, VISION, JSON, TOOLS, MULTI],
            "options": {
                "first_token_ms": 1_200,
                "tokens_per_second": 28,
                "output_tokens": 260,
                "style": "thorough",
                "fail_rate": 0.0,
                "fail_mode": "rate_limit",
            },
            # A price cut, to show the dated price book: calls before June
            # are billed at the old price.
            "prices": [
                Price(SIM_PRICES_FROM, D("15.00"), D("60.00")),
                Price(_at(2025, 6, 1), D("10.00"), D("40.00")),
            ],
        },
        {
            "name": "atlas",
            "display_name": "Atlas (balanced, long context, code)",
            "context_window": 1_000_000,
            "max_output_tokens": 32_768,
            "capabilities": [CODE, JSON, TOOLS, LONG],
            "options": {
                "first_token_ms": 400,
                "tokens_per_second": 75,
                "output_tokens": 180,
                "style": "balanced",
                "fail_rate": 0.0,
                "fail_mode": "rate_limit",
            },
            "prices": [Price(SIM_PRICES_FROM, D("1.00"), D("4.00"))],
        },
        {
            "name": "flaky-7b",
            "display_name": "Flaky 7B (cheap, rate-limited on 30% of calls)",
            "context_window": 8_192,
            "max_output_tokens": 2_048,
            "capabilities": [],
            "options": {
                "first_token_ms": 200,
                "tokens_per_second": 120,
                "output_tokens": 120,
                "style": "plain",
                "fail_rate": 0.3,
                "fail_mode": "rate_limit",
            },
            "prices": [Price(SIM_PRICES_FROM, D("0.05"), D("0.10"))],
        },
    ],
}

OPENAI: dict[str, Any] = {
    "name": "openai",
    "display_name": "OpenAI",
    "kind": "openai",
    "base_url": "https://api.openai.com/v1",
    "api_key_env": "OPENAI_API_KEY",
    "models": [
        {
            "name": "gpt-4o",
            "context_window": 128_000,
            "max_output_tokens": 16_384,
            "capabilities": [CODE, VISION, JSON, TOOLS, MULTI],
            "prices": _listed("2.50", "10.00", cached="1.25"),
        },
        {
            "name": "gpt-4o-mini",
            "context_window": 128_000,
            "max_output_tokens": 16_384,
            "capabilities": [CODE, VISION, JSON, TOOLS, MULTI],
            "prices": _listed("0.15", "0.60", cached="0.075"),
        },
        {
            "name": "gpt-4.1",
            "context_window": 1_047_576,
            "max_output_tokens": 32_768,
            "capabilities": [CODE, VISION, JSON, TOOLS, LONG, MULTI],
            "prices": _listed("2.00", "8.00", cached="0.50"),
        },
        {
            "name": "gpt-4.1-mini",
            "context_window": 1_047_576,
            "max_output_tokens": 32_768,
            "capabilities": [CODE, VISION, JSON, TOOLS, LONG, MULTI],
            "prices": _listed("0.40", "1.60", cached="0.10"),
        },
        {
            "name": "o3-mini",
            "context_window": 200_000,
            "max_output_tokens": 100_000,
            "capabilities": [CODE, JSON, TOOLS],
            "prices": _listed("1.10", "4.40", cached="0.55"),
        },
    ],
}

# Anthropic has no JSON mode (structured output goes through tools), hence no "json" tag.
ANTHROPIC: dict[str, Any] = {
    "name": "anthropic",
    "display_name": "Anthropic",
    "kind": "anthropic",
    "base_url": "https://api.anthropic.com/v1",
    "api_key_env": "ANTHROPIC_API_KEY",
    "models": [
        {
            "name": "claude-sonnet-4",
            "upstream_name": "claude-sonnet-4-20250514",
            "context_window": 200_000,
            "max_output_tokens": 64_000,
            "capabilities": [CODE, VISION, TOOLS, MULTI],
            "prices": _listed("3.00", "15.00", cached="0.30", cache_write="3.75"),
        },
        {
            "name": "claude-3-5-haiku",
            "upstream_name": "claude-3-5-haiku-20241022",
            "context_window": 200_000,
            "max_output_tokens": 8_192,
            "capabilities": [CODE, TOOLS, MULTI],
            "prices": _listed("0.80", "4.00", cached="0.08", cache_write="1.00"),
        },
        {
            "name": "claude-opus-4",
            "upstream_name": "claude-opus-4-20250514",
            "context_window": 200_000,
            "max_output_tokens": 32_000,
            "capabilities": [CODE, VISION, TOOLS, MULTI],
            "prices": _listed("15.00", "75.00", cached="1.50", cache_write="18.75"),
        },
    ],
}

GOOGLE: dict[str, Any] = {
    "name": "google",
    "display_name": "Google Gemini",
    "kind": "gemini",
    "base_url": "https://generativelanguage.googleapis.com/v1beta",
    "api_key_env": "GEMINI_API_KEY",
    "models": [
        {
            "name": "gemini-2.5-pro",
            "context_window": 1_048_576,
            "max_output_tokens": 65_536,
            "capabilities": [CODE, VISION, JSON, TOOLS, LONG, MULTI],
            # Prompts up to 200k tokens; longer ones cost $2.50 / $15.00.
            "prices": _listed("1.25", "10.00"),
        },
        {
            "name": "gemini-2.5-flash",
            "context_window": 1_048_576,
            "max_output_tokens": 65_536,
            "capabilities": [CODE, VISION, JSON, TOOLS, LONG, MULTI],
            "prices": _listed("0.30", "2.50"),
        },
        {
            "name": "gemini-2.0-flash",
            "context_window": 1_048_576,
            "max_output_tokens": 8_192,
            "capabilities": [CODE, VISION, JSON, TOOLS, LONG, MULTI],
            "prices": _listed("0.10", "0.40"),
        },
    ],
}

# Input prices are for cache misses. The history follows DeepSeek's changes:
# V3/R1 prices after the launch discount ended (2025-02-08 16:00 UTC), the
# V3.1 unified price (2025-09-05 16:00 UTC), and the V3.2 cut (2025-09-29).
DEEPSEEK: dict[str, Any] = {
    "name": "deepseek",
    "display_name": "DeepSeek",
    "kind": "openai",
    "base_url": "https://api.deepseek.com/v1",
    "api_key_env": "DEEPSEEK_API_KEY",
    "models": [
        {
            "name": "deepseek-chat",
            "context_window": 128_000,
            "max_output_tokens": 8_192,
            "capabilities": [CODE, JSON, TOOLS, MULTI],
            "prices": [
                Price(_at(2025, 2, 8, 16), D("0.27"), D("1.10")),
                Price(_at(2025, 9, 5, 16), D("0.56"), D("1.68")),
                Price(_at(2025, 9, 29), D("0.28"), D("0.42")),
            ],
        },
        {
            "name": "deepseek-reasoner",
            "context_window": 128_000,
            "max_output_tokens": 65_536,
            "capabilities": [CODE, JSON, MULTI],
            "prices": [
                Price(_at(2025, 2, 8, 16), D("0.55"), D("2.19")),
                Price(_at(2025, 9, 5, 16), D("0.56"), D("1.68")),
                Price(_at(2025, 9, 29), D("0.28"), D("0.42")),
            ],
        },
    ],
}

# Alibaba Cloud Model Studio, international (Singapore) endpoint; prices of
# the lowest input-length tier.
QWEN: dict[str, Any] = {
    "name": "qwen",
    "display_name": "Qwen (Alibaba Model Studio)",
    "kind": "openai",
    "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
    "api_key_env": "DASHSCOPE_API_KEY",
    "models": [
        {
            "name": "qwen-max",
            "context_window": 32_768,
            "max_output_tokens": 8_192,
            "capabilities": [CODE, JSON, TOOLS, MULTI],
            "prices": _listed("1.60", "6.40"),
        },
        {
            "name": "qwen-plus",
            "context_window": 131_072,
            "max_output_tokens": 16_384,
            "capabilities": [CODE, JSON, TOOLS, MULTI],
            "prices": _listed("0.40", "1.20"),
        },
        {
            "name": "qwen-turbo",
            "context_window": 1_000_000,
            "max_output_tokens": 16_384,
            "capabilities": [JSON, TOOLS, LONG, MULTI],
            "prices": _listed("0.05", "0.20"),
        },
    ],
}

# Local models cost nothing per token: marked free, so capped callers may use them. Disabled until someone runs Ollama.
OLLAMA: dict[str, Any] = {
    "name": "ollama",
    "display_name": "Ollama (local)",
    "kind": "ollama",
    "base_url": "http://127.0.0.1:11434",
    "enabled": False,
    "models": [
        {
            "name": "llama3.2",
            "display_name": "Llama 3.2 3B",
            "context_window": 131_072,
            "max_output_tokens": 8_192,
            "capabilities": [TOOLS, MULTI],
            "free": True,
        },
        {
            "name": "qwen2.5-coder",
            "display_name": "Qwen2.5 Coder 7B",
            "context_window": 32_768,
            "max_output_tokens": 8_192,
            "capabilities": [CODE, TOOLS],
            "free": True,
        },
    ],
}

PROVIDERS: list[dict[str, Any]] = [SIMULATED, OPENAI, ANTHROPIC, GOOGLE, DEEPSEEK, QWEN, OLLAMA]

# Chains use only simulated models, so every route works with no API key.
ROUTES: list[dict[str, Any]] = [
    {
        "name": "auto",
        "description": "By how demanding the prompt reads: easy ones to the cheap but flaky model, medium ones to "
        "Atlas, hard ones to Sage Pro; each falls back along the chain.",
        "temperature": 0.7,
        "max_tokens": 1_024,
        "chain": ["sim/flaky-7b", "sim/atlas", "sim/sage-pro"],
        "strategy": "complexity",
        "settings": {
            "bands": [
                {"name": "easy", "below": 0.1, "model": "sim/flaky-7b"},
                {"name": "medium", "below": 0.4, "model": "sim/atlas"},
                {"name": "hard", "model": "sim/sage-pro"},
            ]
        },
    },
    {
        "name": "coding",
        "description": "Code: Atlas first, Sage Pro as fallback; a repeated request is answered from the cache.",
        "temperature": 0.2,
        "cache_enabled": True,
        "max_tokens": 4_096,
        "system_prompt": "You are a senior software engineer. Answer with working code and a short explanation.",
        "chain": ["sim/atlas", "sim/sage-pro"],
    },
    {
        "name": "cheap",
        "description": "The cheapest model for each call first, by its expected cost at today's prices.",
        "temperature": 0.7,
        "max_tokens": 1_024,
        "chain": ["sim/flaky-7b", "sim/swift-mini"],
        "strategy": "budget",
    },
    {
        "name": "fast",
        "description": "The model with the fastest first token lately first (measured every minute).",
        "temperature": 0.5,
        "max_tokens": 512,
        "chain": ["sim/swift-mini", "sim/atlas"],
        "strategy": "fastest",
        "settings": {"by": "ttft", "min_calls": 5},
    },
    {
        "name": "smart",
        "description": "A cascade: Swift Mini first; an answer failing a check goes to Atlas, then Sage Pro.",
        "temperature": 0.7,
        "max_tokens": 1_024,
        "chain": ["sim/swift-mini", "sim/atlas", "sim/sage-pro"],
        "strategy": "cascade",
        "settings": {"min_chars": 20},
    },
    {
        "name": "arena",
        "description": "The cheapest model within 50 points of the best, by your team's votes per kind of prompt.",
        "temperature": 0.7,
        "max_tokens": 1_024,
        "chain": ["sim/swift-mini", "sim/atlas", "sim/sage-pro"],
        "strategy": "quality",
        "settings": {"default": "sim/atlas", "margin": 50, "min_votes": 10},
    },
    {
        "name": "reasoning",
        "description": "Hard questions: the strongest model first, Atlas as fallback.",
        "temperature": 0.3,
        "max_tokens": 8_192,
        "system_prompt": "Think the problem through before answering; state your assumptions.",
        "chain": ["sim/sage-pro", "sim/atlas"],
    },
]
