"""A fake OpenAI Chat Completions upstream serving the recorded bytes of tests/fakes/wire/.

By default POST /v1/chat/completions answers with the recorded stream when the
body asks for one, else with the recorded chat.completion, and GET /v1/models
with the recorded model list. The class methods build Replies for faults, to
pass to `fake.queue(...)`; their keyword options go to Reply (chunk_size,
first_byte_delay, chunk_delay, cut_after).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.server import FakeUpstream, Headers, RecordedRequest, Reply, wire, wire_head, with_counts

_JSON: Headers = [(b"content-type", b"application/json")]

# The recorded answer's usage for a prompt mostly read from the prompt cache
# (which OpenAI fills in steps of 128 tokens) and an answer mostly reasoning:
# the details are parts of prompt_tokens and completion_tokens.
CACHED_USAGE = {
    "prompt_tokens": 2006,
    "cached_tokens": 1920,
    "completion_tokens": 138,
    "reasoning_tokens": 128,
    "total_tokens": 2144,
}


def _with_header(headers: Headers, name: bytes, value: bytes | None) -> Headers:
    """`headers` with `name` replaced by `value`, or dropped when `value` is None."""
    kept = [(key, val) for key, val in headers if key != name]
    return kept if value is None else [*kept, (name, value)]


def _sse_events(body: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in body.split(b"\n\n") if event]


class FakeOpenAI(FakeUpstream):
    def default_reply(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path == "/v1/chat/completions":
            if request.json().get("stream"):
                return self.stream()
            return self.completion()
        if request.method == "GET" and request.path == "/v1/models":
            return Reply(headers=_JSON, body=wire("openai-models-list.json"))
        return super().default_reply(request)

    @classmethod
    def stream(cls, name: str = "openai-chat-stream.sse", **options: Any) -> Reply:
        """A 200 SSE answer with the recorded stream head and the body of wire file `name`."""
        status, headers = wire_head("openai-chat-stream.headers")
        return Reply(status=status, headers=headers, body=wire(name), **options)

    @classmethod
    def completion(cls, name: str = "openai-chat-response.json", **options: Any) -> Reply:
        status, headers = wire_head("openai-chat-response.headers")
        return Reply(status=status, headers=headers, body=wire(name), **options)

    @classmethod
    def cached_stream(cls, **options: Any) -> Reply:
        """The recorded stream, its usage chunk counting CACHED_USAGE."""
        reply = cls.stream(**options)
        reply.body = with_counts(reply.body, **CACHED_USAGE)
        return reply

    @classmethod
    def cached_completion(cls, **options: Any) -> Reply:
        """The recorded chat.completion, its usage counting CACHED_USAGE."""
        reply = cls.completion(**options)
        reply.body = with_counts(reply.body, **CACHED_USAGE)
        return reply

    @classmethod
    def error(cls, status: int, name: str, **options: Any) -> Reply:
        """An error answer with the recorded body `name` (no error head was recorded for it)."""
        return Reply(status=status, headers=_JSON, body=wire(name), **options)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "27", **options: Any) -> Reply:
        """The recorded 429 rate-limit answer; `retry_after` replaces the header, None drops it."""
        status, headers = wire_head("openai-error-429.headers")
        value = None if retry_after is None else retry_after.encode()
        headers = _with_header(headers, b"retry-after", value)
        return Reply(status=status, headers=headers, body=wire("openai-error-429-rate-limit.json"), **options)

    @classmethod
    def insufficient_quota(cls, **options: Any) -> Reply:
        # The spec lets a 429 that needs user action omit retry-after.
        status, headers = wire_head("openai-error-429.headers")
        headers = _with_header(headers, b"retry-after", None)
        return Reply(status=status, headers=headers, body=wire("openai-error-429-insufficient-quota.json"), **options)

    @classmethod
    def server_error(cls, **options: Any) -> Reply:
        return cls.error(500, "openai-error-500.json", **options)

    @classmethod
    def overloaded(cls, **options: Any) -> Reply:
        return cls.error(503, "openai-error-503.json", **options)

    @classmethod
    def unauthorized(cls, **options: Any) -> Reply:
        return cls.error(401, "openai-error-401.json", **options)

    @classmethod
    def context_too_long(cls, **options: Any) -> Reply:
        return cls.error(400, "openai-error-400-context-length.json", **options)

    @classmethod
    def model_not_found(cls, **options: Any) -> Reply:
        return cls.error(404, "openai-error-404-model-not-found.json", **options)

    @classmethod
    def html_bad_gateway(cls, **options: Any) -> Reply:
        """A 502 from a proxy in front of the provider: HTML, not an OpenAI error body."""
        body = (
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
            b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return Reply(status=502, headers=[(b"content-type", b"text/html")], body=body, **options)

    @classmethod
    def midstream_error(cls, **options: Any) -> Reply:
        return cls.stream("openai-chat-stream-error-midstream.sse", **options)

    @classmethod
    def tool_call_stream(cls, **options: Any) -> Reply:
        return cls.stream("openai-chat-stream-tool-calls-recorded.sse", **options)

    @classmethod
    def stream_saying(cls, text: str, **options: Any) -> Reply:
        """The recorded stream with its answer replaced by `text`, in one content chunk (a classifier's reply)."""
        reply = cls.stream(**options)
        events = []
        said = False
        for event in _sse_events(reply.body):
            if b'"delta":{"content":' in event:
                if said:
                    continue
                said = True
                event = re.sub(
                    rb'"delta":\{"content":"[^"]*"\}', b'"delta":{"content":' + json.dumps(text).encode() + b"}", event
                )
            events.append(event)
        reply.body = b"".join(events)
        return reply

    @classmethod
    def length_stream(cls, **options: Any) -> Reply:
        return cls.stream("openai-chat-stream-length-recorded.sse", **options)

    @classmethod
    def slow_first_byte(cls, delay: float, **options: Any) -> Reply:
        return cls.stream(first_byte_delay=delay, **options)

    @classmethod
    def cut_mid_stream(cls, events: int = 3, **options: Any) -> Reply:
        """The recorded stream, dropped in the middle of event number `events` + 1.

        With the default, "Hello!" has arrived (the role chunk, "Hello", "!").
        """
        body = wire("openai-chat-stream.sse")
        complete = sum(len(event) for event in _sse_events(body)[:events])
        return cls.stream(cut_after=complete + 20, **options)

    @classmethod
    def malformed_chunk(cls, events: int = 3, **options: Any) -> Reply:
        """The recorded stream with event number `events` + 1 truncated to half its JSON (still framed)."""
        status, headers = wire_head("openai-chat-stream.headers")
        pieces = _sse_events(wire("openai-chat-stream.sse"))
        broken = pieces[events][: len(pieces[events]) // 2] + b"\n\n"
        body = b"".join([*pieces[:events], broken, *pieces[events + 1 :]])
        return Reply(status=status, headers=headers, body=body, **options)
