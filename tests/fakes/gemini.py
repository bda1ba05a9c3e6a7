"""A fake Gemini API serving the recorded bytes of tests/fakes/wire/ (CRLF kept).

By default `…:streamGenerateContent` answers with the recorded stream and
`…:generateContent` with the recorded response. The functions below build
Replies for every fault; queue them on the fake. Bodies marked "composed"
follow the documented shapes (README section 3) but were not recorded.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.server import FakeUpstream, RecordedRequest, Reply, wire, wire_head

RECORDED_STREAM = "gemini-stream.sse"
THINKING_STREAM = "gemini-stream-thinking.sse"
JSON_HEADERS = [(b"content-type", b"application/json; charset=UTF-8")]
# Prompt tokens read from the cache: cachedContentTokenCount, a part of promptTokenCount.
CACHED_TOKENS = 4096
# The cached variant of the recorded response also thinks.
RESPONSE_THOUGHTS = 100


class FakeGemini(FakeUpstream):
    def default_reply(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path.endswith(":streamGenerateContent"):
            return stream()
        if request.method == "POST" and request.path.endswith(":generateContent"):
            return response()
        return super().default_reply(request)


def stream(name: str = RECORDED_STREAM, **options: Any) -> Reply:
    """A 200 event stream with the recorded streaming head and the body of `name`."""
    return stream_of(wire(name), **options)


def stream_of(body: bytes, **options: Any) -> Reply:
    status, headers = wire_head("gemini-stream.headers")
    return Reply(status=status, headers=headers, body=body, **options)


def sse_chunk(payload: dict[str, Any]) -> bytes:
    """One event framed as Gemini frames it: `data: {json}` and CRLF line ends."""
    return b"data: " + json.dumps(payload).encode() + b"\r\n\r\n"


def response(name: str = "gemini-generate-content-response.json", **options: Any) -> Reply:
    return Reply(status=200, headers=JSON_HEADERS, body=wire(name), **options)


def thinking_stream(**options: Any) -> Reply:
    return stream(THINKING_STREAM, **options)


def cached_thinking_stream(**options: Any) -> Reply:
    """The recorded thinking stream for a prompt CACHED_TOKENS longer, all of them read from the cache."""
    body = re.sub(
        rb'"promptTokenCount": (\d+),',
        lambda count: b'"promptTokenCount": %d,"cachedContentTokenCount": %d,'
        % (int(count[1]) + CACHED_TOKENS, CACHED_TOKENS),
        wire(THINKING_STREAM),
    )
    body = re.sub(
        rb'"totalTokenCount": (\d+)', lambda count: b'"totalTokenCount": %d' % (int(count[1]) + CACHED_TOKENS), body
    )
    return stream_of(body, **options)


def cached_thinking_response(**options: Any) -> Reply:
    """The recorded response for a prompt CACHED_TOKENS longer, all read from the cache, after RESPONSE_THOUGHTS."""
    reply = response(**options)
    counts = b'"promptTokenCount": 7,\n    "candidatesTokenCount": 22,\n    "totalTokenCount": 29,\n'
    assert reply.body.count(counts) == 1
    reply.body = reply.body.replace(
        counts,
        b'"promptTokenCount": %d,\n    "cachedContentTokenCount": %d,\n    "candidatesTokenCount": 22,\n'
        b'    "totalTokenCount": %d,\n    "thoughtsTokenCount": %d,\n'
        % (7 + CACHED_TOKENS, CACHED_TOKENS, 29 + CACHED_TOKENS + RESPONSE_THOUGHTS, RESPONSE_THOUGHTS),
    )
    return reply


def safety_response() -> Reply:
    return response("gemini-generate-content-response-safety.json")


def function_call_stream() -> Reply:
    """Composed: one text chunk, then a chunk with a functionCall part and finishReason STOP.

    Shape as in vertexai-sdk-test-data `streaming-success-function-call-short.txt`:
    Gemini reports STOP, not a tool-call reason, after a function call.
    """
    text = {
        "candidates": [{"content": {"parts": [{"text": "Let me look that up."}], "role": "model"}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 31, "totalTokenCount": 31},
        "modelVersion": "gemini-2.0-flash",
    }
    call = {
        "candidates": [
            {
                "content": {
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 31, "candidatesTokenCount": 12, "totalTokenCount": 43},
        "modelVersion": "gemini-2.0-flash",
    }
    return stream_of(sse_chunk(text) + sse_chunk(call))


def blocked_prompt() -> Reply:
    """Composed: a prompt blocked outright has no candidates, only promptFeedback."""
    body = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": "gemini-2.0-flash",
    }
    return stream_of(sse_chunk(body))


def vertex_error_mid_stream(**options: Any) -> Reply:
    """Two text chunks, then a pretty-printed, un-prefixed 499 CANCELLED error."""
    return stream("gemini-stream-error-midstream-vertex.sse", **options)


def data_error_mid_stream() -> Reply:
    """The first recorded chunk, then the 503 error body on a `data:` line."""
    body = wire(RECORDED_STREAM)
    first = body[: body.index(b"\r\n\r\n") + 4]
    error = json.loads(wire("gemini-error-503.json"))
    return stream_of(first + sse_chunk(error))


def slow_first_byte(delay: float) -> Reply:
    return stream(first_byte_delay=delay)


def cut_mid_stream() -> Reply:
    """The recorded stream, dropped inside the second chunk: only "The" arrives."""
    body = wire(RECORDED_STREAM)
    return stream(cut_after=body.index(b" capital of Wyoming"))


def malformed_chunk() -> Reply:
    body = wire(RECORDED_STREAM)
    first = body[: body.index(b"\r\n\r\n") + 4]
    return stream_of(first + b'data: {"candidates": [{"content": \r\n\r\n')


def error(name: str, headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    """A recorded gemini-error-*.json served with the HTTP status its body names."""
    body = wire(name)
    status = json.loads(body)["error"]["code"]
    return Reply(status=status, headers=JSON_HEADERS + (headers or []), body=body)


def composed_error(code: int, status: str, message: str) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message, "status": status}}, indent=2).encode()
    return Reply(status=code, headers=JSON_HEADERS, body=body)


def api_key_invalid() -> Reply:
    return error("gemini-error-400-api-key-invalid.json")


def permission_denied() -> Reply:
    return error("gemini-error-403.json")


def not_found() -> Reply:
    return error("gemini-error-404.json")


def rate_limited() -> Reply:
    return error("gemini-error-429.json")


def rate_limited_without_details() -> Reply:
    """Composed: a minimal 429 with no RetryInfo; the delay comes from `retry-after`."""
    reply = composed_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    reply.headers = reply.headers + [(b"retry-after", b"7")]
    return reply


def internal_error() -> Reply:
    return error("gemini-error-500.json")


def overloaded() -> Reply:
    return error("gemini-error-503.json")


def deadline_exceeded() -> Reply:
    """Composed: 504 DEADLINE_EXCEEDED."""
    return composed_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")


def invalid_argument() -> Reply:
    """Composed: a 400 that is not about length."""
    return composed_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")


def context_too_long() -> Reply:
    """Composed: 400 INVALID_ARGUMENT with the token-limit wording."""
    return composed_error(
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    )


def bad_gateway_html() -> Reply:
    """A non-JSON body from a proxy in front of the API."""
    return Reply(status=502, headers=[(b"content-type", b"text/html")], body=b"<html>502 Bad Gateway</html>")
