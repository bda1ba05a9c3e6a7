"""A fake Anthropic Messages API serving the recorded bytes of tests/fakes/wire/.

By default `POST …/messages` answers with the recorded stream when the body
asks for `"stream": true` and with the recorded Message otherwise. The
functions below build Replies for every fault; queue them on the fake. Bodies
marked "composed" follow the documented error shape, with a message taken
from the README's notes rather than from a recording.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.server import FakeUpstream, RecordedRequest, Reply, wire, wire_head, with_counts

RECORDED_STREAM = "anthropic-messages-stream-recorded.sse"
TOOL_USE_STREAM = "anthropic-messages-stream-tool-use-recorded.sse"
JSON_HEADERS = [(b"content-type", b"application/json")]
# Prompt tokens written to the cache and read from it, besides the fresh `input_tokens`.
CACHE_WRITE_TOKENS = 1024
CACHE_READ_TOKENS = 4096


class FakeAnthropic(FakeUpstream):
    def default_reply(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path.endswith("/messages"):
            return stream() if request.json().get("stream") else message()
        return super().default_reply(request)


def stream(name: str = RECORDED_STREAM, **options: Any) -> Reply:
    """A 200 event stream with the recorded streaming head and the body of `name`."""
    status, headers = wire_head("anthropic-messages-stream.headers")
    return Reply(status=status, headers=headers, body=wire(name), **options)


def stream_of(body: bytes, **options: Any) -> Reply:
    """A 200 event stream with the recorded streaming head and any body."""
    status, headers = wire_head("anthropic-messages-stream.headers")
    return Reply(status=status, headers=headers, body=body, **options)


def message(**options: Any) -> Reply:
    status, headers = wire_head("anthropic-messages-response.headers")
    return Reply(status=status, headers=headers, body=wire("anthropic-messages-response.json"), **options)


def tool_use_stream(**options: Any) -> Reply:
    return stream(TOOL_USE_STREAM, **options)


def cached_tool_use_stream(**options: Any) -> Reply:
    """The recorded tool-use stream, whose message_start reports cache writes and reads (0 in the recording)."""
    body = with_counts(
        wire(TOOL_USE_STREAM),
        cache_creation_input_tokens=CACHE_WRITE_TOKENS,
        cache_read_input_tokens=CACHE_READ_TOKENS,
    )
    return stream_of(body, **options)


def cached_message(**options: Any) -> Reply:
    """The recorded Message with the cache counts that current responses carry next to input_tokens."""
    reply = message(**options)
    input_tokens = b'    "input_tokens": 12,\n'
    assert reply.body.count(input_tokens) == 1
    reply.body = reply.body.replace(
        input_tokens,
        input_tokens
        + b'    "cache_creation_input_tokens": %d,\n    "cache_read_input_tokens": %d,\n'
        % (CACHE_WRITE_TOKENS, CACHE_READ_TOKENS),
    )
    return reply


def overloaded_mid_stream() -> Reply:
    """Text "Hello", then `event: error` with overloaded_error, then the end of the body."""
    return stream("anthropic-messages-stream-error-overloaded.sse")


def slow_first_byte(delay: float) -> Reply:
    return stream(first_byte_delay=delay)


def cut_mid_stream() -> Reply:
    """The recorded stream, dropped inside the second text delta: only "Hello" arrives."""
    body = wire(RECORDED_STREAM)
    return stream(cut_after=body.index(b'"text":" there"'))


def malformed_chunk() -> Reply:
    body = wire(RECORDED_STREAM)
    start = body.index(b"event: content_block_delta")
    broken = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{\n\n'
    return stream_of(body[:start] + broken + body[start:])


def error(status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status=status, headers=JSON_HEADERS if headers is None else headers, body=body)


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()


def rate_limited() -> Reply:
    status, headers = wire_head("anthropic-error-429.headers")
    return error(status, wire("anthropic-error-429.json"), headers)


def overloaded() -> Reply:
    status, headers = wire_head("anthropic-error-529.headers")
    return error(status, wire("anthropic-error-529-overloaded.json"), headers)


def server_error() -> Reply:
    return error(500, wire("anthropic-error-500.json"))


def unauthorized() -> Reply:
    return error(401, wire("anthropic-error-401.json"))


def bad_request() -> Reply:
    return error(400, wire("anthropic-error-400.json"))


def not_found() -> Reply:
    return error(404, wire("anthropic-error-404.json"))


def forbidden() -> Reply:
    """Composed: 403 permission_error."""
    message = "Your API key does not have permission to use the specified resource."
    return error(403, error_body("permission_error", message))


def billing_error() -> Reply:
    """Composed: billing_error (its HTTP status is not documented; 400 here)."""
    return error(400, error_body("billing_error", "Your credit balance is too low to access the Anthropic API."))


def prompt_too_long() -> Reply:
    """Composed: 400 invalid_request_error with the "prompt is too long" wording."""
    return error(400, error_body("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"))


def request_too_large() -> Reply:
    """Composed: 413 request_too_large, as Cloudflare answers before the API."""
    return error(413, error_body("request_too_large", "Request exceeds the maximum allowed number of bytes."))


def bad_gateway_html() -> Reply:
    """A non-JSON body from a proxy in front of the API."""
    return error(502, b"<html><body>502 Bad Gateway</body></html>", [(b"content-type", b"text/html")])
