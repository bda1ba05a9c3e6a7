"""The gateway's own small HTTP types: a request as the ASGI app reads it, a response as it sends it.

Every answer of /v1, errors included, is in OpenAI's shape: an OpenAI SDK
must not be able to tell Switchyard from OpenAI.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # The body's pieces, each with whether more follow (the last one ends the response in the same write).
    stream: AsyncIterator[tuple[bytes, bool]] | None = None


def header_value(text: str) -> str:
    """`text` as a header can carry it: printable ASCII, anything else as "?".

    A team or user name may hold characters that a header cannot carry, or
    CR and LF, which would split it.
    """
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, headers or {})


def openai_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return json_response(
        status,
        {"error": {"message": message, "type": type, "param": param, "code": code}},
        headers,
    )


class BodyTooLarge(Exception):
    pass


class ClientDisconnected(Exception):
    """The client went away before its request had arrived: a normal event, with no one left to answer."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    receive: Receive

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)
