"""A fake Ollama server (native /api/chat) serving the recorded bytes of tests/fakes/wire/.

By default POST /api/chat answers with the recorded NDJSON stream unless the
body says `"stream": false` (Ollama streams by default), then with the
recorded non-streaming body. The class methods build Replies for faults, to
pass to `fake.queue(...)`; their keyword options go to Reply.

Where nothing was recorded (a tool-call stream, a chat-API mid-stream error,
the 400/429/503 bodies) the bytes are composed here in Ollama's format, each
saying what it was built from.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.server import FakeUpstream, Headers, RecordedRequest, Reply, wire, wire_head

# gin's c.JSON content type.
_JSON: Headers = [(b"content-type", b"application/json; charset=utf-8")]


def _ndjson(*objects: dict[str, Any]) -> bytes:
    """Lines as server/routes.go streamResponse writes them: compact json.Marshal plus LF."""
    return b"".join(json.dumps(obj, separators=(",", ":")).encode() + b"\n" for obj in objects)


class FakeOllama(FakeUpstream):
    def default_reply(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path == "/api/chat":
            if request.json().get("stream", True):
                return self.stream()
            return self.response()
        return super().default_reply(request)

    @classmethod
    def stream(cls, body: bytes | None = None, **options: Any) -> Reply:
        """A 200 NDJSON answer with the recorded stream head; the recorded stream unless `body` is given."""
        status, headers = wire_head("ollama-chat-stream.headers")
        if body is None:
            body = wire("ollama-chat-stream.ndjson")
        return Reply(status=status, headers=headers, body=body, **options)

    @classmethod
    def response(cls, **options: Any) -> Reply:
        return Reply(headers=_JSON, body=wire("ollama-chat-response.json"), **options)

    @classmethod
    def error(cls, status: int, body: bytes, **options: Any) -> Reply:
        return Reply(status=status, headers=_JSON, body=body, **options)

    @classmethod
    def model_not_found(cls, **options: Any) -> Reply:
        return cls.error(404, wire("ollama-error-404-model-not-found.json"), **options)

    @classmethod
    def server_error(cls, **options: Any) -> Reply:
        return cls.error(500, wire("ollama-error.json"), **options)

    @classmethod
    def overloaded(cls, **options: Any) -> Reply:
        # The text of ErrMaxQueue, which server/sched.go returns when the queue is full.
        body = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'
        return cls.error(503, body, **options)

    @classmethod
    def rate_limited(cls, retry_after: str = "7", **options: Any) -> Reply:
        # ollama.com answers 429 (docs/api/errors.mdx); no body was recorded.
        reply = cls.error(429, b'{"error":"too many requests"}', **options)
        reply.headers = [*reply.headers, (b"retry-after", retry_after.encode())]
        return reply

    @classmethod
    def context_too_long(cls, **options: Any) -> Reply:
        # The 400 text Ollama gives when a prompt does not fit and truncation is off.
        return cls.error(400, b'{"error":"the input length exceeds the context length"}', **options)

    @classmethod
    def midstream_error(cls, **options: Any) -> Reply:
        """The recorded mid-stream error, verbatim: /api/generate lines, then an `error` line."""
        return cls.stream(wire("ollama-stream-error-midstream.ndjson"), **options)

    @classmethod
    def chat_midstream_error(cls, lines: int = 3, **options: Any) -> Reply:
        """The first `lines` lines of the recorded chat stream, then the recorded error line."""
        chat = wire("ollama-chat-stream.ndjson").splitlines(keepends=True)
        error = wire("ollama-stream-error-midstream.ndjson").splitlines(keepends=True)[-1]
        return cls.stream(b"".join([*chat[:lines], error]), **options)

    @classmethod
    def tool_call_stream(cls, **options: Any) -> Reply:
        """A streamed tool call, composed from docs/api.md "Chat request (with tools)".

        Ollama sends each call whole (arguments as an object) in one line, then the done line.
        """
        body = _ndjson(
            {
                "model": "llama3.2",
                "created_at": "2024-07-22T20:33:28.123648Z",
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "function": {
                                "name": "get_current_weather",
                                "arguments": {"format": "celsius", "location": "Paris, FR"},
                            }
                        }
                    ],
                },
                "done": False,
            },
            {
                "model": "llama3.2",
                "created_at": "2024-07-22T20:33:28.134521Z",
                "message": {"role": "assistant", "content": ""},
                "done_reason": "stop",
                "done": True,
                "total_duration": 885095291,
                "load_duration": 3753500,
                "prompt_eval_count": 122,
                "prompt_eval_duration": 328493000,
                "eval_count": 33,
                "eval_duration": 552222000,
            },
        )
        return cls.stream(body, **options)

    @classmethod
    def cached_prompt_stream(cls, **options: Any) -> Reply:
        """The recorded stream with `prompt_eval_count` dropped from the done line, as Ollama omits a zero."""
        lines = wire("ollama-chat-stream.ndjson").splitlines(keepends=True)
        done = json.loads(lines[-1])
        del done["prompt_eval_count"]
        return cls.stream(b"".join([*lines[:-1], _ndjson(done)]), **options)

    @classmethod
    def slow_first_byte(cls, delay: float, **options: Any) -> Reply:
        return cls.stream(first_byte_delay=delay, **options)

    @classmethod
    def cut_mid_stream(cls, lines: int = 2, **options: Any) -> Reply:
        """The recorded stream, dropped in the middle of line `lines` + 1 (default: after "The sky")."""
        chat = wire("ollama-chat-stream.ndjson").splitlines(keepends=True)
        return cls.stream(cut_after=sum(len(line) for line in chat[:lines]) + 20, **options)

    @classmethod
    def malformed_chunk(cls, lines: int = 2, **options: Any) -> Reply:
        """The recorded stream with line `lines` + 1 cut to half its JSON."""
        chat = wire("ollama-chat-stream.ndjson").splitlines(keepends=True)
        broken = chat[lines][: len(chat[lines]) // 2] + b"\n"
        return cls.stream(b"".join([*chat[:lines], broken, *chat[lines + 1 :]]), **options)
