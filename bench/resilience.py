"""The response cache and the circuit breakers, end to end through /v1.

Starts the fast fake upstream (bench/fast_upstream.py), an embedded Redis and
Switchyard as `make run` runs it (uvicorn + one Celery worker, SQLite under a
temporary folder), then prints:

- the response cache: a hit (the same request again) against a miss (every
  request new) and against a request that skips the cache
  (`cache-control: no-cache`), p50 at concurrency 1 and requests/s at 100;
- a provider that fails every call (a 503 after 50 ms) first on a route
  whose second model answers: p50/p99 of the route's calls while every call
  tries the failing provider (its circuit cannot open: a threshold no run
  reaches), and once its circuit has opened (3 failures in 60 s, the
  default), beside the answering model asked directly.

Run:  .venv/bin/python bench/resilience.py [--quick]

Bounded: every phase stops after its request count or its time limit,
whichever comes first; everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402
from bench.loadgen import PhaseResult, run_phase  # noqa: E402
from bench.site import site_prepared, site_started  # noqa: E402

SETUP = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.services import api_key_create
from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep

def model(provider, name):
    m = LanguageModel.objects.create(public_id=provider.name + "/" + name, provider=provider, upstream_name=name,
                                     context_window=128000, max_output_tokens=4096)
    ModelPrice.objects.create(model=m, input_per_million=Decimal("0.15"), output_per_million=Decimal("0.60"))
    return m

def route(name, chain, **fields):
    r = Route.objects.create(name=name, **fields)
    for position, m in enumerate(chain):
        RouteStep.objects.create(route=r, model=m, position=position)

bench = Provider.objects.create(name="bench", kind="openai", base_url="{base_url}", timeout_seconds=30)
down = Provider.objects.create(name="down", kind="openai", base_url="{base_url}", timeout_seconds=30)
unbroken = Provider.objects.create(name="unbroken", kind="openai", base_url="{base_url}", timeout_seconds=30,
                                   circuit_failures=32767)
answering = model(bench, "bench-json")
route("cached", [answering], cache_enabled=True)
route("fail-first", [model(down, "bench-fail"), answering])
route("fail-first-unbroken", [model(unbroken, "bench-fail"), answering])
print(api_key_create(user=get_user_model().objects.create_user("bench"), name="bench")[1])
"""

HELLO = {"role": "user", "content": "Say twenty words."}


@dataclass(frozen=True)
class Phase:
    label: str
    model: str
    concurrency: int
    requests: int
    time_limit: float
    vary: bool = False
    skip_cache: bool = False


def payload(model: str) -> dict[str, object]:
    return {"model": model, "messages": [HELLO]}


def new_request(model: str) -> Callable[[int], dict[str, object]]:
    """Requests never sent before in this run: each is a cache miss."""
    numbers = itertools.count()

    def request(_: int) -> dict[str, object]:
        return {"model": model, "messages": [{"role": "user", "content": f"Say twenty words. #{next(numbers)}"}]}

    return request


async def run(port: int, p: Phase, auth: dict[str, str]) -> PhaseResult:
    headers = auth | ({"cache-control": "no-cache"} if p.skip_cache else {})
    return await run_phase(
        host="127.0.0.1",
        port=port,
        path="/v1/chat/completions",
        payload=payload(p.model),
        headers=headers,
        concurrency=p.concurrency,
        requests=p.requests,
        time_limit=p.time_limit,
        vary=new_request(p.model) if p.vary else None,
    )


def report(p: Phase, result: PhaseResult) -> None:
    print(f"{p.label:<34}{p.concurrency:>5}{result.rps:>9.0f}{result.p50:>9.2f}{result.p99:>9.2f}{result.errors:>7}")
    for sample in result.error_samples:
        print(f"    error: {sample}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests, for a smoke run")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0

    def n(count: int) -> int:
        return max(20, int(count * scale))

    cache_phases = [
        Phase("cache hit", "cached", 1, n(1000), 60),
        Phase("cache miss", "cached", 1, n(1000), 60, vary=True),
        Phase("cache skipped (no-cache)", "cached", 1, n(1000), 60, skip_cache=True),
        Phase("cache hit", "cached", 100, n(6000), 90),
        Phase("cache miss", "cached", 100, n(6000), 90, vary=True),
        Phase("cache skipped (no-cache)", "cached", 100, n(6000), 90, skip_cache=True),
    ]
    circuit_phases = [
        Phase("answering model asked directly", "bench/bench-json", 10, n(2000), 60),
        Phase("failing first, circuit never opens", "fail-first-unbroken", 10, n(2000), 60),
        Phase("failing first, circuit open", "fail-first", 10, n(2000), 60),
    ]

    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    children: list[devstack.Child] = []
    try:
        upstream_port = devstack.free_port()
        devstack.spawn(
            "fake upstream", [sys.executable, str(ROOT / "bench" / "fast_upstream.py"), str(upstream_port)],
            dict(os.environ), into=children,
        )  # fmt: skip
        redis_url = devstack.start_redis(devstack.free_port(), port_hint="", into=children)
        env = site_prepared(workdir, redis_url)
        setup = SETUP.format(base_url=f"http://127.0.0.1:{upstream_port}/v1")
        key = devstack.manage("shell", "-c", setup, env=env, capture=True).strip().splitlines()[-1]
        web_port = site_started(env, children, concurrency=256)
        auth = {"Authorization": f"Bearer {key}"}
        print(f"Switchyard resilience bench: {os.cpu_count()} CPUs, scale {scale:g}\n")

        # Warm-up: the worker's threads and connections, and the cached answer of the hit phases.
        asyncio.run(run(web_port, Phase("warm-up", "cached", 10, 300, 60, skip_cache=True), auth))
        asyncio.run(run(web_port, Phase("warm-up", "cached", 1, 1, 10), auth))
        header = f"{'phase':<34}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}"
        print(header)
        print("-" * len(header))
        for p in cache_phases:
            report(p, asyncio.run(run(web_port, p, auth)))
        print()
        # The default threshold: 3 failures within 60 s open the circuit for 30 s.
        asyncio.run(run(web_port, Phase("open the circuit", "fail-first", 1, 5, 30), auth))
        for p in circuit_phases:
            report(p, asyncio.run(run(web_port, p, auth)))
        return 0
    finally:
        services = [child for child in children if child.name in ("web", "worker")]
        devstack.stop(services, grace=10)
        devstack.stop([child for child in children if child not in services], grace=5)


if __name__ == "__main__":
    sys.exit(main())
