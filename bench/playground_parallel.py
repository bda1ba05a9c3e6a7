"""Do a playground run's columns really run in parallel, alone and under twenty users?

Starts an embedded Redis and Switchyard as `make run` runs it (uvicorn + one
Celery worker, threads pool, SQLite under a temporary folder), with a
`sim` simulated provider whose four models each answer in about 2 s, and
twenty users. Then, as a browser would (httpx, cookies, CSRF token from the
form, the htmx POST of the run form, the run's SSE stream found in the
answer's sse-connect attribute, read until its `done` event):

- reference: each model called alone through /v1 (streamed), a few times;
- phase 1: one user, one four-model run, five times: the slowest column,
  the run's total (POST to `done`) and total / slowest single call - 1;
- phase 2: twenty users at once, each a four-model run (80 calls), three
  times: p50/p95 run total, errors, CPU seconds of the web, worker, Redis
  and this client.

Run:  .venv/bin/python bench/playground_parallel.py

Bounded: an overall deadline (--deadline, 300 s by default) and a timeout
per run; everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402
from bench.site import site_prepared, site_started  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
USERS = 20
PASSWORD = "bench-" + secrets.token_urlsafe(12)
MODELS = [f"sim/model-{n}" for n in range(1, 5)]
# About 90 tokens at 50 tokens/s after 200 ms: about 2 s per answer.
SIM_OPTIONS = {"first_token_ms": 200, "tokens_per_second": 50, "output_tokens": 90}
PROMPT = "Explain the difference between a process and a thread."
RUN_TIMEOUT = 60.0

SETUP = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.services import api_key_create
from routing.models import LanguageModel, ModelPrice, Provider
p = Provider.objects.create(name="sim", kind="simulated", timeout_seconds=30)
for public_id in {models!r}:
    m = LanguageModel.objects.create(public_id=public_id, provider=p, upstream_name=public_id.split("/")[1],
                                     context_window=128000, max_output_tokens=4096, options={options!r})
    ModelPrice.objects.create(model=m, input_per_million=Decimal("0.50"), output_per_million=Decimal("1.50"))
User = get_user_model()
for n in range(1, {users} + 1):
    User.objects.create_user(f"bench{{n:02d}}", password={password!r})
print(api_key_create(user=User.objects.get(username="bench01"), name="bench")[1])
"""

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_SSE_CONNECT = re.compile(r'sse-connect="([^"]+)"')


@dataclass
class RunResult:
    total: float = float("nan")
    # POST to the answer holding the stream's address.
    posted: float = float("nan")
    first_text: dict[int, float] = field(default_factory=dict)
    ended: dict[int, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def slowest_column(self) -> float:
        return max(self.ended.values()) if self.ended else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def log_in(client: httpx.AsyncClient, username: str) -> str:
    """Log in through the form as a browser does; returns the playground form's CSRF token."""
    page = await client.get("/accounts/login/")
    token = _CSRF.search(page.text)
    if token is None:
        raise RuntimeError("no CSRF token on the login page")
    answer = await client.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": PASSWORD},
    )
    if answer.status_code != 302:
        raise RuntimeError(f"login of {username} failed: HTTP {answer.status_code}")
    form = await client.get("/playground/")
    token = _CSRF.search(form.text)
    if form.status_code != 200 or token is None:
        raise RuntimeError(f"no playground form for {username}: HTTP {form.status_code}")
    return token.group(1)


async def play(client: httpx.AsyncClient, csrf: str, models: list[str]) -> RunResult:
    """POST the run form as htmx does and read the run's SSE stream to its `done` event."""
    result = RunResult()
    began = time.perf_counter()
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            answer = await client.post(
                "/playground/",
                data={"csrfmiddlewaretoken": csrf, "prompt": PROMPT, "models": models, "category": ""},
                headers={"HX-Request": "true", "HX-Target": "run-area"},
            )
            result.posted = time.perf_counter() - began
            found = _SSE_CONNECT.search(answer.text)
            if answer.status_code != 200 or found is None:
                result.errors.append(f"POST: HTTP {answer.status_code}, no sse-connect")
                return result
            event = ""
            async with client.stream("GET", found.group(1), headers={"Accept": "text/event-stream"}) as stream:
                if stream.status_code != 200:
                    result.errors.append(f"stream: HTTP {stream.status_code}")
                    return result
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line == "" and event:
                        now = time.perf_counter() - began
                        kind, _, position = event.rpartition("-")
                        if kind in ("text", "delta"):
                            result.first_text.setdefault(int(position), now)
                        elif kind in ("done", "error"):
                            result.ended[int(position)] = now
                            if kind == "error":
                                result.errors.append(event)
                        elif event == "done":
                            result.total = now
                            break
                        event = ""
            if result.total != result.total:
                result.errors.append("stream ended without done")
    except TimeoutError:
        result.errors.append("timeout")
    except httpx.HTTPError as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
    return result


async def single_call(base_url: str, key: str, model: str) -> float:
    """Seconds for one streamed /v1 call of `model`, to its [DONE]."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    async with httpx.AsyncClient(base_url=base_url, timeout=RUN_TIMEOUT) as client:
        began = time.perf_counter()
        async with client.stream("POST", "/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as stream:  # fmt: skip
            stream.raise_for_status()
            async for line in stream.aiter_lines():
                if line == "data: [DONE]":
                    return time.perf_counter() - began
    raise RuntimeError(f"{model}: stream ended without [DONE]")


def show_run(label: str, run: RunResult, reference: float) -> None:
    firsts = " ".join(f"{run.first_text.get(n, float('nan')):.2f}" for n in range(len(MODELS)))
    ends = " ".join(f"{run.ended.get(n, float('nan')):.2f}" for n in range(len(MODELS)))
    print(
        f"  {label:<7} first text [{firsts}]  column ends [{ends}]  slowest column {run.slowest_column:.2f} s"
        f"  total {run.total:.2f} s  total/slowest single call - 1 = {100 * (run.total / reference - 1):+.1f}%"
        + (f"  errors {run.errors}" if run.errors else "")
    )


async def benchmark(base_url: str, key: str, pids: dict[str, int], deadline: float) -> None:
    def left() -> float:
        return deadline - time.monotonic()

    print("Reference: each model alone through /v1 (streamed), seconds to [DONE], 3 calls each")
    singles: dict[str, float] = {}
    for model in MODELS:
        times = [await single_call(base_url, key, model) for _ in range(3)]
        singles[model] = statistics.median(times)
        print(f"  {model}: " + " ".join(f"{t:.2f}" for t in times) + f"  median {singles[model]:.2f} s")
    reference = max(singles.values())
    print(f"  slowest single call (median): {reference:.2f} s\n")

    clients = [httpx.AsyncClient(base_url=base_url, timeout=RUN_TIMEOUT) for _ in range(USERS)]
    try:
        tokens = await asyncio.gather(*(log_in(c, f"bench{n + 1:02d}") for n, c in enumerate(clients)))

        print("Phase 1: one user, one four-model run, 5 times")
        totals: list[float] = []
        overheads: list[float] = []
        for n in range(5):
            if left() < RUN_TIMEOUT:
                print("  deadline reached")
                break
            run = await play(clients[0], tokens[0], MODELS)
            show_run(f"run {n + 1}", run, reference)
            totals.append(run.total)
            overheads.append(100 * (run.total / reference - 1))
        if totals:
            print(f"  median total {statistics.median(totals):.2f} s, "
                  f"median total/slowest single call - 1 = {statistics.median(overheads):+.1f}%")  # fmt: skip
        pair = await play(clients[0], tokens[0], MODELS[:2])
        print(f"  two-model run ({', '.join(MODELS[:2])}, the form's minimum) total {pair.total:.2f} s"
              f"{'  errors ' + str(pair.errors) if pair.errors else ''}\n")  # fmt: skip

        print(f"Phase 2: {USERS} users at once, each a four-model run ({USERS * len(MODELS)} calls), 3 rounds")
        for n in range(3):
            if left() < RUN_TIMEOUT + 5:
                print("  deadline reached")
                break
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            began = time.perf_counter()
            runs = await asyncio.gather(*(play(c, t, MODELS) for c, t in zip(clients, tokens, strict=True)))
            wall = time.perf_counter() - began
            cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            done = [r.total for r in runs if r.total == r.total]
            posts = [r.posted for r in runs if r.posted == r.posted]
            firsts = [t for r in runs for t in r.first_text.values()]
            errors = [e for r in runs for e in r.errors]
            print(
                f"  round {n + 1}: runs done {len(done)}/{USERS}, errors {len(errors)}, wall {wall:.2f} s;"
                f" run total p50 {pct(done, 0.5):.2f} s p95 {pct(done, 0.95):.2f} s"
                f" (p50 {100 * (pct(done, 0.5) / reference - 1):+.0f}% over the slowest single call)\n"
                f"           POST p50 {pct(posts, 0.5):.2f} s p95 {pct(posts, 0.95):.2f} s;"
                f" first text p50 {pct(firsts, 0.5):.2f} s p95 {pct(firsts, 0.95):.2f} s;"
                f" CPU s " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
            )
            for sample in sorted(set(errors))[:5]:
                print(f"    error: {sample}")
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=256, help="worker threads (CELERY_CONCURRENCY)")
    parser.add_argument("--deadline", type=float, default=300, help="overall limit in seconds")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline

    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    children: list[devstack.Child] = []
    try:
        redis_url = devstack.start_redis(devstack.free_port(), port_hint="", into=children)
        env = site_prepared(workdir, redis_url)
        setup = SETUP.format(models=MODELS, options=SIM_OPTIONS, users=USERS, password=PASSWORD)
        key = devstack.manage("shell", "-c", setup, env=env, capture=True).strip().splitlines()[-1]
        web_port = site_started(env, children, concurrency=args.concurrency)
        base_url = f"http://127.0.0.1:{web_port}"
        pids = {
            "web": children[2].process.pid,
            "worker": children[1].process.pid,
            "redis": children[0].process.pid,
            "bench client": os.getpid(),
        }
        print(f"Playground parallelism bench: {os.cpu_count()} CPUs, worker threads {args.concurrency},"
              f" simulated models {SIM_OPTIONS}\n")  # fmt: skip
        asyncio.run(benchmark(base_url, key, pids, deadline))
        return 0
    finally:
        devstack.stop(children, grace=5)


if __name__ == "__main__":
    sys.exit(main())
