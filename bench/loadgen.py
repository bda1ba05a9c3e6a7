"""A small, fast HTTP/1.1 load generator for the benchmarks (raw asyncio, keep-alive).

httpx's AsyncClient costs milliseconds of CPU per request, which would make
the load generator the bottleneck it is meant to measure around; this one
speaks just enough HTTP/1.1 (content-length and chunked bodies) for
Chat Completions, streamed or not.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class PhaseResult:
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def pct(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return self.pct(self.latencies, 0.50)

    @property
    def p99(self) -> float:
        return self.pct(self.latencies, 0.99)

    @property
    def ttft_p50(self) -> float:
        return self.pct(self.ttfts, 0.50)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float | None, bytes]:
        """POST and read the whole answer; returns status, seconds to the first answer token, body."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        started = time.perf_counter()
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = None
        chunked = False
        close = False
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        ttft = None
        parts: list[bytes] = []
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                piece = await self.reader.readexactly(size + 2)
                if ttft is None and b"word" in piece:
                    ttft = time.perf_counter() - started
                parts.append(piece[:-2])
        elif length is not None:
            parts.append(await self.reader.readexactly(length))
        else:
            parts.append(await self.reader.read())
            close = True
        if close:
            self.close()
        return status, ttft, b"".join(parts)


async def run_phase(
    *,
    host: str,
    port: int,
    path: str,
    payload: dict[str, object],
    headers: dict[str, str],
    concurrency: int,
    requests: int,
    time_limit: float,
    vary: Callable[[int], dict[str, object]] | None = None,
) -> PhaseResult:
    """Send `requests` requests with `concurrency` connections, stopping early after `time_limit` seconds.

    With `vary`, request number n sends `vary(n)` instead of `payload` (a cache's misses).
    """
    body = json.dumps(payload).encode()
    result = PhaseResult(concurrency)
    remaining = requests
    streamed = bool(payload.get("stream"))
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal remaining
        connection = Connection(host, port)
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                sent = body if vary is None else json.dumps(vary(remaining)).encode()
                started = time.perf_counter()
                try:
                    status, ttft, answer = await asyncio.wait_for(connection.post(path, sent, headers), 60)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    connection.close()
                    result.errors += 1
                    if len(result.error_samples) < 3:
                        result.error_samples.append(repr(exc))
                    continue
                elapsed = time.perf_counter() - started
                ok = status == 200 and (b"[DONE]" in answer if streamed else b'"choices"' in answer)
                if not ok:
                    result.errors += 1
                    if len(result.error_samples) < 3:
                        result.error_samples.append(f"{status}: {answer[:200]!r}")
                    continue
                result.latencies.append(elapsed)
                result.ttfts.append(ttft if ttft is not None else elapsed)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result
