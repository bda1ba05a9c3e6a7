"""What a hostile client gets from the real server: raw requests over a socket, and the answers they must get.

Every request that the server refuses gets OpenAI's error JSON with the
status and `code` an SDK branches on, starts no call (no task message, no
usage record) and leaves no traceback in the server's log. To cover a new
attack, add a row to BODIES (a chat completion body) or to REQUESTS (the
raw bytes of a whole request, sent in timed pieces).

The server is the suite's gateway_url: uvicorn with switchyard.server's
settings, in this process, so that the settings fixture reaches it.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from billing.models import UsageRecord
from routing.models import LanguageModel, ModelPrice
from switchyard.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)

# Replaced by the test's API key as the request goes out.
KEY = b"<api key>"
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + KEY + b"\r\n"
ERROR_FIELDS = {"message", "type", "param", "code"}
HI = [{"role": "user", "content": "Hi"}]


def chat_body(model: str = "sim/swift", messages: Any = None, **fields: Any) -> bytes:
    return json.dumps({"model": model, "messages": HI if messages is None else messages, **fields}).encode()


def tool(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "get_weather", **function}}


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    for _ in range(levels - 1):
        value = {"type": "object", "properties": {"x": value}}
    return value


def post(body: bytes, *, length: int | None = None) -> bytes:
    """A POST of `body` with the test's key; its Content-Length is len(body) unless `length` says otherwise."""
    head = (
        f"Content-Type: application/json\r\nContent-Length: {len(body) if length is None else length}\r\n"
        "Connection: close\r\n\r\n"
    )
    return HEAD + head.encode() + body


# A chat completion body, POSTed whole with a true Content-Length, and the 400 it gets.
@dataclass(frozen=True)
class Body:
    id: str
    body: bytes
    param: str | None
    code: str | None


BODIES = [
    Body("name is an object", chat_body(messages=[{"role": "user", "content": "Hi", "name": {"a": 1}}]),
         "messages[0].name", "invalid_type"),
    Body("name is an array", chat_body(messages=[{"role": "user", "content": "Hi", "name": ["a"]}]),
         "messages[0].name", "invalid_type"),
    Body("system name is an object", chat_body(messages=[{"role": "system", "content": "Be brief", "name": {}}, *HI]),
         "messages[0].name", "invalid_type"),
    Body("role is an array", chat_body(messages=[{"role": [], "content": "Hi"}]), "messages[0].role", "invalid_type"),
    Body("role is an object", chat_body(messages=[{"role": {}, "content": "Hi"}]), "messages[0].role", "invalid_type"),
    Body("role is missing", chat_body(messages=[{"content": "Hi"}]), "messages[0].role", "missing_required_parameter"),
    Body("user content is missing", chat_body(messages=[{"role": "user"}]), "messages[0].content",
         "missing_required_parameter"),
    Body("assistant content is missing with no tool calls",
         chat_body(messages=[*HI, {"role": "assistant"}, *HI]), "messages[1].content", "missing_required_parameter"),
    Body("role is unknown", chat_body(messages=[{"role": "wizard", "content": "Hi"}]), "messages[0].role",
         "invalid_value"),
    Body("content part text is a number",
         chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
         "messages[0].content[0].text", "invalid_type"),
    Body("content part text is an object",
         chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": {"t": "Hi"}}]}]),
         "messages[0].content[0].text", "invalid_type"),
    Body("content part text is missing", chat_body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
         "messages[0].content[0].text", "missing_required_parameter"),
    Body("tool_call_id is an object",
         chat_body(messages=[*HI, {"role": "tool", "tool_call_id": {"id": "c"}, "content": "sunny"}]),
         "messages[1].tool_call_id", "invalid_type"),
    Body("tool call id is a number",
         chat_body(messages=[*HI, {"role": "assistant", "tool_calls": [{"id": 7, "function": {"name": "f"}}]}]),
         "messages[1].tool_calls[0].id", "invalid_type"),
    Body("tool call name is an array",
         chat_body(messages=[*HI, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": ["f"]}}]}]),
         "messages[1].tool_calls[0].function.name", "invalid_type"),
    Body("tool description is an object", chat_body(tools=[tool(description={"d": 1})]),
         "tools[0].function.description", "invalid_type"),
    Body("tool name is a number", chat_body(tools=[{"type": "function", "function": {"name": 3}}]),
         "tools[0].function.name", "invalid_type"),
    # Lone surrogates, escaped in the JSON (raw, as bytes, they are not UTF-8).
    Body("escaped lone surrogate in content", chat_body(messages=[{"role": "user", "content": "a\ud800b"}]),
         "messages[0].content", "invalid_value"),
    Body("escaped lone surrogate in a content part",
         chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]),
         "messages[0].content[0].text", "invalid_value"),
    Body("escaped lone surrogate in the system prompt",
         chat_body(messages=[{"role": "system", "content": "\udc00"}, *HI]), "messages[0].content", "invalid_value"),
    Body("escaped lone surrogate in a tool description", chat_body(tools=[tool(description="\ud800")]),
         "tools[0].function.description", "invalid_value"),
    Body("escaped lone surrogate in tool parameters",
         chat_body(tools=[tool(parameters={"type": "object", "properties": {"\ud800": {"type": "string"}}})]),
         "tools[0].function.parameters.properties", "invalid_value"),
    Body("escaped lone surrogate in the model", chat_body(model="sim/\ud800"), "model", "invalid_value"),
    Body("escaped lone surrogate in a name", chat_body(messages=[{"role": "user", "content": "Hi", "name": "\ud800"}]),
         "messages[0].name", "invalid_value"),
    Body("escaped lone surrogate in stop", chat_body(stop=["\ud800"]), "stop[0]", "invalid_value"),
    Body("escaped lone surrogate in user", chat_body(user="\udbff"), "user", "invalid_value"),
    Body("escaped lone surrogate in a response schema",
         chat_body(response_format={"type": "json_schema", "json_schema": {
             "name": "x", "schema": {"title": "\ud800"}}}),
         "response_format.json_schema.schema.title", "invalid_value"),
    Body("escaped high surrogate before a non-surrogate escape",
         b'{"model": "sim/swift", "messages": [{"role": "user", "content": "\\uD800\\u0041"}]}',
         "messages[0].content", "invalid_value"),
    Body("raw surrogate bytes in content",
         b'{"model": "sim/swift", "messages": [{"role": "user", "content": "a\xed\xa0\x80b"}]}', None, None),
    Body("raw surrogate bytes in the model", b'{"model": "sim/\xed\xb0\x80", "messages": []}', None, None),
    Body("invalid UTF-8 in content", b'{"model": "sim/swift", "messages": [{"role": "user", "content": "\xff"}]}',
         None, None),
    Body("body nested 2000 levels", b"[" * 2000 + b"]" * 2000, None, None),
    Body("an ignored field nested 2000 levels",
         chat_body()[:-1] + b', "metadata": ' + b"[" * 2000 + b"]" * 2000 + b"}", None, None),
    Body("tool parameters nested 65 levels", chat_body(tools=[tool(parameters=nested(65))]),
         "tools[0].function.parameters", "invalid_value"),
    Body("response schema nested 65 levels",
         chat_body(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": nested(65)}}),
         "response_format.json_schema.schema", "invalid_value"),
    Body("tool call arguments nested 65 levels",
         chat_body(messages=[*HI, {"role": "assistant", "tool_calls": [{"id": "c", "function": {
             "name": "f", "arguments": nested(65)}}]}]),
         "messages[1].tool_calls[0].function.arguments", "invalid_value"),
    Body("tool call arguments, a string, nested 2000 levels",
         chat_body(messages=[*HI, {"role": "assistant", "tool_calls": [{"id": "c", "function": {
             "name": "f", "arguments": "[" * 2000 + "]" * 2000}}]}]),
         "messages[1].tool_calls[0].function.arguments", "invalid_value"),
    Body("tools on a model not tagged tools", chat_body(model="sim/swift-mini", tools=[tool()]), "tools",
         "unsupported_parameter"),
    Body("a JSON schema on a model not tagged json",
         chat_body(model="sim/swift-mini", response_format={"type": "json_object"}), "response_format",
         "unsupported_parameter"),
    Body("an image on a model not tagged vision",
         chat_body(model="sim/swift-mini", messages=[{"role": "user", "content": [
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]),
         "messages", "unsupported_parameter"),
]  # fmt: skip


# The raw bytes of a whole request, sent in pieces with pauses (seconds) between them.
@dataclass(frozen=True)
class Raw:
    id: str
    pieces: tuple[bytes | float, ...]
    # What the client gets; None: no answer (the server just closes, or the client hangs up).
    status: int | None
    code: str | None = None
    # The client closes the connection after its last piece, without reading.
    hang_up: bool = False
    # A logger that the server's handling of the request ends with: the log
    # is checked once it has spoken, not before.
    settles_on: str | None = None


VALID = chat_body()
# The timeouts that the module's settings fixture gives the server.
TIMEOUT = 1.0

REQUESTS = [
    # Requests the HTTP parser refuses.
    Raw("unknown method", (b"BREW /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",), 400,
        "invalid_http_request"),
    Raw("malformed request line", (b"GET /v1/models HTTP/1.1 please\r\nHost: 127.0.0.1\r\n\r\n",), 400,
        "invalid_http_request"),
    Raw("not HTTP at all (a TLS hello)", (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),), 400,
        "invalid_http_request"),
    Raw("a raw non-ASCII byte in the path", (b"GET /v1/models/\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",), 400,
        "invalid_http_request"),
    Raw("a Content-Length that is not a number", (HEAD + b"Content-Length: 12abc\r\n\r\n" + VALID,), 400,
        "invalid_http_request"),
    # Closing, the connection drops what follows the declared body, which is not JSON.
    Raw("Content-Length shorter than the body", (post(VALID, length=10),), 400, None),
    # Kept alive, it reads what follows as the next request: the first is dropped.
    Raw("Content-Length shorter than the body, kept alive", (HEAD + b"Content-Length: 10\r\n\r\n" + VALID,), 400,
        "invalid_http_request", settles_on="routing.gateway"),
    # Headers over the limit (64 KiB), in one line or in many, on /v1 or elsewhere.
    Raw("a 1 MB header", (HEAD + b"X-Big: " + b"a" * 2**20 + b"\r\n\r\n",), 431, "request_headers_too_large"),
    Raw("100 headers of 1 KB", (HEAD + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1024) for i in range(100)) + b"\r\n",),
        431, "request_headers_too_large"),
    Raw("a 1 MB header on a page", (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 2**20 + b"\r\n\r\n",),
        431, "request_headers_too_large"),
    # Slow requests: past the timeouts, 408 and the connection closed.
    Raw("Content-Length longer than the body", (post(VALID, length=len(VALID) + 10),), 408, "request_timeout",
        settles_on="routing.gateway"),
    Raw("body trickling in", (post(VALID)[:-15], *(x for byte in VALID[-15:] for x in (0.1, bytes([byte])))), 408,
        "request_timeout", settles_on="routing.gateway"),
    Raw("headers that never end", (HEAD,), 408, "request_timeout"),
    Raw("headers trickling in", (HEAD, *(x for i in range(12) for x in (0.15, b"X-%d: slow\r\n" % i))), 408,
        "request_timeout"),
    Raw("a connection that sends nothing", (), None),
    # A normal event: no answer, no trace in the log.
    Raw("client hangs up mid-body", (post(VALID, length=len(VALID) + 10),), None, hang_up=True,
        settles_on="routing.gateway"),
]  # fmt: skip


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        assert self.headers["content-type"].startswith("application/json"), self
        error: dict[str, Any] = json.loads(self.body)["error"]
        assert set(error) == ERROR_FIELDS
        assert isinstance(error["message"], str) and error["message"]
        return error


def exchange(url: str, pieces: tuple[bytes | float, ...], key: str, *, hang_up: bool = False) -> Answer | None:
    """Send `pieces` (bytes, or a pause in seconds) on a fresh connection and read the answer until the server closes.

    None if nothing came back. With `hang_up`, the client closes the
    connection after its last piece and reads nothing. A piece the server
    no longer takes (it has answered and closed) ends the sending.
    """
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        for piece in pieces:
            if isinstance(piece, float):
                time.sleep(piece)
                continue
            try:
                sock.sendall(piece.replace(KEY, key.encode()))
            except (BrokenPipeError, ConnectionResetError):
                break
        if hang_up:
            return None
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    if not received:
        return None
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split(" ")[1]), headers, body[: int(headers.get("content-length", len(body)))])


@pytest.fixture
def swift_mini(registry: dict[str, Any]) -> LanguageModel:
    """A model tagged with no capability a request may need (tools, json, vision)."""
    model = LanguageModel.objects.create(
        public_id="sim/swift-mini",
        provider=registry["providers"]["sim"],
        upstream_name="swift-mini",
        context_window=128000,
        max_output_tokens=4096,
        capabilities=["code"],
        options={"tokens_per_second": 0, "output_tokens": 30},
    )
    ModelPrice.objects.create(model=model, input_per_million=Decimal("0.1"), output_per_million=Decimal("0.4"))
    return model


@pytest.fixture
def held_queue(
    redis_client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[redis.Redis, str]]:
    """Task messages go to a queue that no worker reads, where a test can count them."""
    held = f"{redis_prefix}held"
    monkeypatch.setitem(celery_app.conf, "task_default_queue", held)
    yield redis_client, held


@dataclass
class ServerLog:
    records: list[logging.LogRecord]

    def wait_for(self, logger_prefix: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while not any(r.name.startswith(logger_prefix) for r in self.records):
            assert time.monotonic() < deadline, f"nothing logged by {logger_prefix} within {timeout} s"
            time.sleep(0.01)

    def assert_clean(self) -> None:
        bad = [r for r in self.records if r.exc_info or r.levelno >= logging.ERROR]
        assert not bad, "\n".join(logging.Formatter().format(r) for r in bad)


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    """Every record the server logs meanwhile, uvicorn's included (its loggers do not propagate to the root)."""
    log = ServerLog([])
    handler = _Collect(log.records)
    tops = [logging.getLogger(), logging.getLogger("uvicorn")]
    # The test server's log level (critical) is set on uvicorn.error itself.
    loggers = [*tops, logging.getLogger("uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in tops:
        logger.addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield log
    for logger in tops:
        logger.removeHandler(handler)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture
def refused(
    gateway_url: str,
    api_key: str,
    swift_mini: LanguageModel,
    held_queue: tuple[redis.Redis, str],
    server_log: ServerLog,
) -> Iterator[Any]:
    """Send a request; afterwards, check that it started no call and that the server's log is clean."""

    def send(pieces: tuple[bytes | float, ...], *, hang_up: bool = False) -> Answer | None:
        return exchange(gateway_url, pieces, api_key, hang_up=hang_up)

    yield send
    client, held = held_queue
    assert client.llen(held) == 0
    assert UsageRecord.objects.count() == 0
    server_log.assert_clean()


@pytest.mark.parametrize("row", BODIES, ids=[row.id for row in BODIES])
def test_a_hostile_body_gets_a_400_naming_the_field(refused: Any, row: Body) -> None:
    answer = refused((post(row.body),))

    assert answer.status == 400, answer
    error = answer.error()
    assert (error["param"], error["code"], error["type"]) == (row.param, row.code, "invalid_request_error")


@pytest.fixture
def short_timeouts(settings: Any) -> None:
    # The server reads them for each new connection.
    settings.HTTP_HEADER_TIMEOUT_SECONDS = TIMEOUT
    settings.HTTP_BODY_TIMEOUT_SECONDS = TIMEOUT


@pytest.mark.parametrize("row", REQUESTS, ids=[row.id for row in REQUESTS])
def test_a_hostile_request_gets_its_answer_in_openais_shape(
    refused: Any, server_log: ServerLog, short_timeouts: None, row: Raw
) -> None:
    started = time.monotonic()
    answer = refused(row.pieces, hang_up=row.hang_up)

    if row.settles_on:
        server_log.wait_for(row.settles_on)
    if row.status is None:
        assert answer is None, answer
        return
    assert answer is not None and answer.status == row.status, answer
    error = answer.error()
    assert (error["param"], error["code"], error["type"]) == (None, row.code, "invalid_request_error")
    assert answer.headers["connection"] == "close"
    if row.status == 408:
        assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 2


def test_a_valid_request_sent_the_same_way_is_answered(
    gateway_url: str, api_key: str, registry: dict[str, Any], celery_worker: Any, server_log: ServerLog
) -> None:
    # The rows' refusals are the server's doing, not the harness's: a good request through it is answered.
    answer = exchange(gateway_url, (post(chat_body()),), api_key)

    assert answer is not None and answer.status == 200, answer
    assert json.loads(answer.body)["choices"][0]["message"]["content"]
    server_log.assert_clean()
