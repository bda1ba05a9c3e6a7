"""A fast fake OpenAI Chat Completions upstream for benchmarks (not for tests).

Raw asyncio protocol, HTTP/1.1 keep-alive, canned bytes: one process serves
tens of thousands of requests per second, so it is never the bottleneck of a
gateway benchmark. The upstream model name picks the behaviour:

    bench-json     a chat.completion JSON body
    bench-stream   20 SSE chunks at once, then usage and [DONE]
    bench-paced    first chunk after 100 ms, then 20 chunks 10 ms apart
    bench-fail     a 503 after 50 ms, every time (a provider that is down)

Run: python bench/fast_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

CHUNKS = 20
_WORDS = [f" word{i}" for i in range(CHUNKS)]
_JSON_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "bench-json",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "".join(_WORDS)}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS},
    }
).encode()


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


_ROLE = _chunk({"role": "assistant", "content": ""})
_WORD_CHUNKS = [_chunk({"content": w}) for w in _WORDS]
_TAIL = (
    _chunk({}, "stop")
    + b"data: "
    + json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": "bench",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS},
        },
        separators=(",", ":"),
    ).encode()
    + b"\n\ndata: [DONE]\n\n"
)
_JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_JSON_BODY)).encode()
    + b"\r\n\r\n"
    + _JSON_BODY
)
_FAIL_BODY = json.dumps(
    {"error": {"message": "The server is overloaded.", "type": "server_error", "param": None, "code": None}}
).encode()
_FAIL_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_FAIL_BODY)).encode()
    + b"\r\n\r\n"
    + _FAIL_BODY
)
FAIL_DELAY_SECONDS = 0.05
_STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_STREAM_INSTANT = (
    _STREAM_HEAD
    + b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in [_ROLE + b"".join(_WORD_CHUNKS) + _TAIL])
    + b"0\r\n\r\n"
)


# How long each paced stream took this process, read and cleared by GET /stats:
# sharing the machine's cores, its own pacing slows when they are busy.
_paced_seconds: list[float] = []


def _framed(piece: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece)


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[head_end + 4 : total]
            self.buffer = self.buffer[total:]
            if head.startswith(b"get /stats"):
                self.send_stats()
            else:
                self.respond(body)

    def send_stats(self) -> None:
        """The paced streams' own durations since the last ask, from request to last byte written."""
        assert self.transport is not None
        durations = sorted(_paced_seconds)
        _paced_seconds.clear()
        p50 = durations[len(durations) // 2] * 1000 if durations else None
        body = json.dumps({"paced": len(durations), "paced_p50_ms": p50}).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )

    def respond(self, body: bytes) -> None:
        assert self.transport is not None
        if b"bench-fail" in body:
            asyncio.get_running_loop().call_later(FAIL_DELAY_SECONDS, self.fail)
        elif b'"stream":true' not in body.replace(b" ", b""):
            self.transport.write(_JSON_RESPONSE)
        elif b"bench-paced" in body:
            asyncio.get_running_loop().create_task(self.paced())
        else:
            self.transport.write(_STREAM_INSTANT)

    def fail(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_FAIL_RESPONSE)

    async def paced(self) -> None:
        assert self.transport is not None
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.1)
        self.transport.write(_STREAM_HEAD + _framed(_ROLE + _WORD_CHUNKS[0]))
        for piece in _WORD_CHUNKS[1:]:
            await asyncio.sleep(0.01)
            if self.transport.is_closing():
                return
            self.transport.write(_framed(piece))
        self.transport.write(_framed(_TAIL) + b"0\r\n\r\n")
        _paced_seconds.append(asyncio.get_running_loop().time() - started)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(UpstreamProtocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
