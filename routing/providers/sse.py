"""Server-sent events, decoded from lines as the WHATWG spec describes.

Fed the lines of a response (routing.providers.http.aiter_lines splits on LF,
CRLF and CR), it yields one ServerSentEvent per blank-line-terminated block. An event cut
off by the end of the stream is discarded, as the spec says.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


async def aiter_sse(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    event = ""
    data: list[str] = []
    last_id: str | None = None
    async for line in lines:
        if line == "":
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
