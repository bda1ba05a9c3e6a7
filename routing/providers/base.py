"""The adapter contract shared by every provider.

An adapter turns one ChatRequest into one provider call and the provider's
answer into events (routing.providers.types). Callers only ever use
`ProviderAdapter.stream`, which guarantees the shape of what comes out:

    (TextDelta | ToolCallDelta)*  Usage  (Finish | StreamError)

exactly one Usage (estimated when the provider reported none) and exactly one
terminal event, and it never raises ProviderError: failures arrive as a
StreamError. Adapters are asynchronous: they run on the worker's event loop
(routing/calls/worker_loop.py). Closing the generator early (the client went away)
closes the upstream connection.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import json
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp

from routing import tokens
from routing.providers import http
from routing.providers.errors import ErrorKind, ProviderError
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    ModelConfig,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)


class ProviderAdapter(abc.ABC):
    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def _events(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        """Yield TextDelta, ToolCallDelta, Usage and finally Finish for one call (an async generator).

        Implementations raise ProviderError on failure (before or during the
        stream) and may let aiohttp's transport and timeout exceptions
        propagate: stream() maps them. Usage may be omitted when the provider
        sends none.
        """

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        output_text: list[str] = []
        usage: Usage | None = None
        events = self._events(request)
        try:
            async for event in events:
                if isinstance(event, Usage):
                    usage = event
                    continue
                if isinstance(event, Finish):
                    yield usage or await self._estimated_usage(request, output_text)
                    yield event
                    return
                if isinstance(event, TextDelta):
                    output_text.append(event.text)
                elif isinstance(event, ToolCallDelta):
                    output_text.append((event.name or "") + event.arguments)
                yield event
            error = ProviderError(ErrorKind.UNAVAILABLE, "the provider ended the stream without finishing")
        except ProviderError as exc:
            error = exc
        except TimeoutError as exc:
            error = ProviderError(ErrorKind.TIMEOUT, f"no answer within the timeout ({type(exc).__name__})")
        except http.TRANSPORT_ERRORS as exc:
            error = ProviderError(ErrorKind.UNAVAILABLE, f"connection to the provider failed ({type(exc).__name__})")
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            # Well-formed JSON of an unexpected shape: the provider's answer is
            # unusable, which is the provider's failure, not a crash of ours.
            error = ProviderError(
                ErrorKind.UNAVAILABLE, f"the provider sent an unexpected answer ({type(exc).__name__})"
            )
        finally:
            # Now, not when the garbage collector finds it: this releases the upstream connection.
            await events.aclose()
        yield usage or await self._estimated_usage(request, output_text)
        yield StreamError(error)

    async def _estimated_usage(self, request: ChatRequest, output_text: list[str]) -> Usage:
        return Usage(
            input_tokens=await tokens.aestimate_request_tokens(request),
            output_tokens=await tokens.aestimate_text_tokens("".join(output_text)),
            estimated=True,
        )


class HttpAdapter(ProviderAdapter):
    """Base for adapters that speak HTTP through the event loop's pooled session (routing/providers/http.py)."""

    @abc.abstractmethod
    def error_from_response(self, status_code: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """Map a non-2xx response to a ProviderError of the right kind."""

    @contextlib.asynccontextmanager
    async def post(
        self, url: str, *, headers: dict[str, str], body: dict[str, Any]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `body` as JSON and yield the open response; non-2xx raises ProviderError."""
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", **headers}
        timeout = http.timeout(
            connect_seconds=self.config.connect_timeout_seconds, read_seconds=self.config.timeout_seconds
        )
        session = http.upstream_session()
        proxy = http.proxy_for(url)
        async with session.post(url, data=payload, headers=headers, timeout=timeout, proxy=proxy) as response:
            if response.status >= 400:
                raise self.error_from_response(response.status, response.headers, await response.read())
            yield response


def decode_json(data: str | bytes) -> Any:
    """Parse one JSON document from a chunk; a malformed chunk means the stream is broken."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a malformed chunk") from exc


def decode_json_object(data: str | bytes) -> dict[str, Any]:
    """Like decode_json, for chunks that must be JSON objects."""
    parsed = decode_json(data)
    if not isinstance(parsed, dict):
        raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a malformed chunk")
    return parsed


def tool_arguments_object(arguments: str) -> dict[str, Any]:
    """A tool call's JSON-string arguments as the object that Anthropic, Gemini and Ollama expect."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ProviderError(ErrorKind.BAD_REQUEST, "tool call arguments must be a JSON object")
    return value


def data_url_parts(url: str) -> tuple[str, str]:
    """(media type, base64 payload) of a `data:` URL."""
    header, _, payload = url[len("data:") :].partition(",")
    media_type, *params = header.split(";")
    if "base64" not in params:
        payload = base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode()
    return media_type or "image/png", payload


__all__ = [
    "FinishReason",
    "HttpAdapter",
    "ProviderAdapter",
    "data_url_parts",
    "decode_json",
    "decode_json_object",
    "tool_arguments_object",
]
