"""The web server: uvicorn with Switchyard's settings, and the limits on how a request may arrive.

    python -m switchyard.server --host 0.0.0.0 --port 8000

The dev stack, the Docker image and the tests all start uvicorn with
`options()`, so they serve with the same protocol, limits and shutdown.

uvicorn by itself answers a request it cannot parse (an unknown method, a
malformed request line, a Content-Length that lies) with a plain-text 400,
takes headers of any size, and waits forever for headers or a body that
trickle in: a few hundred slow connections hold a web process. EdgeProtocol
is its httptools protocol with limits on that (settings.HTTP_HEADER_TIMEOUT_SECONDS,
HTTP_BODY_TIMEOUT_SECONDS, HTTP_MAX_HEADER_BYTES), and its own refusals in
OpenAI's error JSON (on every path: a 400, 408 or 431 before routing), so
that an OpenAI SDK gets an error it understands.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import httptools
import uvicorn
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from routing.gateway.http import openai_error

APP = "switchyard.asgi:application"

# After a refusal the server stops sending but reads, and drops, what the
# client still sends for this long before it closes: closing a socket with
# unread data sends a reset, which can destroy the answer before the client
# has read it.
LINGER_SECONDS = 2.0


def options() -> dict[str, Any]:
    """uvicorn.Config's arguments, besides the app, the address and the logging."""
    return {
        "http": EdgeProtocol,
        # Django has no lifespan support; "auto" only logs that.
        "lifespan": "off",
        # Open SSE streams would otherwise hold a shutdown until SIGKILL;
        # a stream cut short cancels its call.
        "timeout_graceful_shutdown": 3,
    }


class _Refused(Exception):
    """Raised in a parser callback to refuse the request being parsed."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with time and size limits on the request's arrival and refusals in OpenAI's shape.

    A connection is in its head (from its first byte, or from the
    connection's opening, to the end of the headers) or in a body (from
    the end of the headers to the end of the body); each has its own
    deadline. A request that arrives in one piece, the common case, arms
    no timer: the deadline is set only when a read ends with a head or a
    body still incomplete.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per connection, so that a test's settings reach a running server.
        self.header_timeout: float = settings.HTTP_HEADER_TIMEOUT_SECONDS
        self.body_timeout: float = settings.HTTP_BODY_TIMEOUT_SECONDS
        self.max_header_bytes: int = settings.HTTP_MAX_HEADER_BYTES
        self.in_head = True
        self.in_body = False
        self.head_bytes = 0
        self.reading = 0
        self.deadline: asyncio.TimerHandle | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn has no timeout before a connection's first request.
        self.deadline = self.loop.call_later(self.header_timeout, self.timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self._unset_keepalive_if_required()
        self.reading = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            # An error raised in a callback reaches here as its __context__.
            cause = exc.__context__ if isinstance(exc.__context__, _Refused) else None
            if cause is None:
                self.refuse(400, f"Invalid HTTP request: {exc}.", "invalid_http_request")
            else:
                self.refuse(cause.status, cause.message, cause.code)
            return
        if self.in_head:
            # httptools buffers a header line until it ends: count what came in, ended or not.
            self.head_bytes += len(data)
            if self.head_bytes > self.max_header_bytes:
                self.refuse(431, self.headers_too_large(), "request_headers_too_large")
                return
        if self.deadline is None and (self.in_head or self.in_body):
            timeout = self.header_timeout if self.in_head else self.body_timeout
            self.deadline = self.loop.call_later(timeout, self.timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0

    def on_headers_complete(self) -> None:
        # What came in for this head bounds its size: only a large read needs the headers counted.
        if self.head_bytes + self.reading > self.max_header_bytes and (
            len(self.url) + sum(len(name) + len(value) for name, value in self.headers) > self.max_header_bytes
        ):
            raise _Refused(431, self.headers_too_large(), "request_headers_too_large")
        self.in_head = False
        self.in_body = True
        self.cancel_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_body = False
        self.cancel_deadline()
        super().on_message_complete()

    def headers_too_large(self) -> str:
        return f"Request headers too large: the limit is {self.max_header_bytes} bytes."

    def timed_out(self) -> None:
        self.deadline = None
        if self.in_body and self.cycle.response_started:
            # The app has answered already (a 413, say) without waiting for the body.
            self.transport.close()
        elif self.in_body:
            self.refuse(
                408,
                f"The request body did not arrive in time: the limit is {self.body_timeout:g} s.",
                "request_timeout",
            )
        elif self.in_head and self.head_bytes:
            self.refuse(
                408,
                f"The request headers did not arrive in time: the limit is {self.header_timeout:g} s.",
                "request_timeout",
            )
        elif self.in_head:
            # Nothing was asked: there is no one to answer.
            self.transport.close()

    def cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def refuse(self, status: int, message: str, code: str) -> None:
        """Answer `status` in OpenAI's error JSON, unless a response is under way, and end the connection."""
        self.cancel_deadline()
        self.refused = True
        self.logger.info("%s refused: %s", _client(self.client), message)
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(self.error_bytes(status, message, code))
        if cycle is not None and not cycle.response_complete:
            # The app gets http.disconnect from its next receive, and what it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.flow.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def error_bytes(self, status: int, message: str, code: str) -> bytes:
        body = openai_error(status, message, code=code).body
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        return b"".join(head) + body


def _client(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m switchyard.server", description="Serve Switchyard with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("UVICORN_WORKERS") or 1),
        help="processes (default: $UVICORN_WORKERS or 1)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchyard.settings")
    uvicorn.run(
        APP,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
        **options(),
    )


if __name__ == "__main__":
    main()
