"""How long each routing strategy takes to decide, per call, on the web's event loop.

Builds a registry in memory (five priced models, a route per strategy) and
times `resolve()` (the capability filter, the strategy's decision and the
trace) on short and long prompts, many times each, and prints p50 and p99
per strategy and prompt size. No database, no network: it measures the
decision alone, which is what a strategy adds to a call.

Run:  .venv/bin/python bench/routing_decisions.py [--calls N]

Bounded: --calls decisions per strategy and prompt size (default 5000).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchyard.settings")

import django  # noqa: E402

django.setup()

from routing.catalog import Catalog, CatalogModel, CatalogRoute, LoadedRouter, PriceRow, _strategy_of  # noqa: E402
from routing.learned.graded import Graded  # noqa: E402
from routing.learned.router import LearnedRouter, router_train  # noqa: E402
from routing.providers.types import ChatRequest, Message  # noqa: E402
from routing.strategies.base import Hints  # noqa: E402
from routing.strategies.resolution import resolve  # noqa: E402

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
PRICES = {
    "mini": ("0.10", "0.40"),
    "mid": ("1.00", "4.00"),
    "pro": ("10", "40"),
    "coder": ("0.5", "2"),
    "x": ("3", "15"),
}
SETTINGS = {
    "fixed": {},
    "rules": {
        "rules": [
            {"name": "code", "when": {"code": True}, "to": "b/coder"},
            {"name": "support", "when": {"tags": ["support"], "keywords": ["refund", "invoice"]}, "to": "b/mid"},
            {"name": "maths", "when": {"category": ["reasoning"]}, "to": "b/pro"},
            {"name": "long", "when": {"min_chars": 20000}, "to": "b/x"},
        ]
    },
    "complexity": {
        "bands": [
            {"name": "easy", "below": 0.1, "model": "b/mini"},
            {"name": "medium", "below": 0.4, "model": "b/mid"},
            {"name": "hard", "model": "b/pro"},
        ]
    },
    "budget": {"max_price": "0.01", "output_tokens": 600},
    "weighted": {"weights": {"b/mini": 80, "b/mid": 20}, "sticky": "session"},
    "fastest": {"by": "ttft", "min_calls": 20},
    "quality": {"default": "b/pro", "margin": 50, "min_votes": 10},
    "cascade": {"min_chars": 20},
    # Without its model's answer (made before resolving, routing/calls/classify.py): the local scorer's path.
    "classifier": {"model": "b/mini", "categories": {"quick": "b/mini", "coding": "b/coder", "reasoning": "b/pro"}},
    "learned": {"weak": "b/mini", "strong": "b/pro", "strong_share": 0.3},
}
# What routing/model_health.py measures, for the fastest strategy.
HEALTH = {
    "at": NOW.isoformat(),
    "windows": {
        "1": {
            f"b/{name}": {
                "answered": 100,
                "latency_p50": 900.0 - 100 * i,
                "ttft_p50": 300.0 - 50 * i,
                "tried": 110,
                "failed": i,
            }
            for i, name in enumerate(PRICES)
        }
    },
}
# What the playground publishes for the quality strategy (routing/arena_standings.py): every category ranked.
STANDINGS = {
    "categories": {
        category: {
            "votes": 40,
            "models": {
                f"b/{name}": {"score": 900.0 + 60 * i, "low": 850.0, "high": 1200.0} for i, name in enumerate(PRICES)
            },
        }
        for category in ("coding", "reasoning", "writing", "quick")
    }
}
PROMPTS = {
    "short": "How do tides work? Explain briefly.",
    "long (12 KB)": "Summarise the following report for a board meeting.\n\n" + "The quarter went well. " * 520,
}


def catalog() -> Catalog:
    models = {
        f"b/{name}": CatalogModel(
            public_id=f"b/{name}",
            display_name=name,
            provider_name="b",
            provider_kind="openai",
            provider_enabled=True,
            enabled=True,
            upstream_name=name,
            base_url="http://127.0.0.1:9",
            api_key_env="",
            api_key_encrypted="",
            timeout_seconds=30,
            connect_timeout_seconds=5,
            context_window=128_000,
            max_output_tokens=4096,
            capabilities=frozenset({"tools"}),
            options={},
            created=NOW,
            prices=(PriceRow(NOW - dt.timedelta(days=1), Decimal(price_in), Decimal(price_out)),),
        )
        for name, (price_in, price_out) in PRICES.items()
    }
    names = frozenset(models) | frozenset(SETTINGS)
    routes = {
        name: CatalogRoute(
            name=name,
            description="",
            enabled=True,
            temperature=None,
            max_tokens=None,
            system_prompt="",
            chain=tuple(models),
            created=NOW,
            **_strategy_of(name, settings, names),
        )
        for name, settings in SETTINGS.items()
    }
    return Catalog(version=1, models=models, routes=routes, learned={"learned": LoadedRouter(1, _learned_router())})


def _learned_router() -> LearnedRouter:
    """A router trained on made-up prompts: its decision costs the same whatever it learned (hashing, two dots)."""
    words = "tides proof poem report integral capital query quarter".split()
    graded = [Graded(f"{words[i % 8]} {words[(i * 3) % 8]} number {i}", i % 3 != 0, True) for i in range(200)]
    return router_train(graded, target_share=0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    registry = catalog()
    hints = Hints(tags=frozenset({"support"}), session="conversation-1")
    print(f"{'strategy':10} {'prompt':14} {'p50 µs':>8} {'p99 µs':>8}")
    for strategy in SETTINGS:
        for label, text in PROMPTS.items():
            request = ChatRequest(messages=(Message(role="user", content=text),))
            timings = []
            for _ in range(args.calls):
                started = time.perf_counter_ns()
                resolve(
                    registry,
                    strategy,
                    request,
                    hints=hints,
                    caller="user:1",
                    now=NOW,
                    health=HEALTH,
                    standings=STANDINGS,
                )
                timings.append((time.perf_counter_ns() - started) / 1000)
            timings.sort()
            p99 = timings[int(len(timings) * 0.99)]
            print(f"{strategy:10} {label:14} {statistics.median(timings):8.1f} {p99:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
