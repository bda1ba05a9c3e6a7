"""Ollama's native chat API: `POST {base_url}/api/chat`, NDJSON streaming.

`base_url` is the server root (http://localhost:11434). A local server needs
no key; with one (ollama.com) it goes in `Authorization: Bearer <key>`.

Ollama has no tool_choice: `none` sends no tools, a named function sends only
that tool, and `required` cannot be expressed, so the model may answer in text.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from typing import Any

from routing.providers.base import (
    HttpAdapter,
    decode_json,
    decode_json_object,
    tool_arguments_object,
)
from routing.providers.errors import ErrorKind, ProviderError, retry_after_from_headers
from routing.providers.http import aiter_lines
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    ModelConfig,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

_CONTEXT_MESSAGE = re.compile(r"\bcontext[ _](?:length|window|size|limit)\b|\bnum_ctx\b", re.IGNORECASE)
_DATA_URL = re.compile(r"data:[^,]*;base64,", re.IGNORECASE)


class OllamaAdapter(HttpAdapter):
    async def _events(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        url = self.config.base_url.rstrip("/") + "/api/chat"
        body = ollama_chat_body(request, self.config)
        headers = {"authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        async with self.post(url, headers=headers, body=body) as response:
            try:
                chunks: AsyncIterable[dict[str, Any]]
                if request.stream:
                    chunks = (decode_json_object(line) async for line in aiter_lines(response) if line.strip())
                else:
                    chunks = _only(decode_json_object(await response.read()))
                async for event in chat_events(chunks):
                    yield event
            except (AttributeError, TypeError, ValueError) as exc:
                # Valid JSON of the wrong shape (a list where an object belongs) breaks the stream too.
                raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a chunk of an unexpected shape") from exc

    def error_from_response(self, status_code: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            parsed = decode_json(body)
        except ProviderError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        message = error if isinstance(error, str) and error else f"Ollama answered HTTP {status_code}"
        kind = _error_kind(status_code, message)
        retry_after = retry_after_from_headers(headers) if kind is ErrorKind.RATE_LIMITED else None
        return ProviderError(kind, message, status_code=status_code, retry_after=retry_after)


async def chat_events(chunks: AsyncIterable[dict[str, Any]]) -> AsyncIterator[Event]:
    """Events of /api/chat answer objects: every streamed line, or the one non-streamed body."""
    tool_calls = 0
    async for chunk in chunks:
        if error := chunk.get("error"):
            # The status is already 200: the model failed while generating.
            raise ProviderError(ErrorKind.UNAVAILABLE, str(error))
        message = chunk.get("message") or {}
        if content := message.get("content"):
            yield TextDelta(content)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            arguments = function.get("arguments", {})
            yield ToolCallDelta(
                index=tool_calls,
                # Ollama names no call; OpenAI clients need an id to answer it.
                id=call.get("id") or f"call_{tool_calls}",
                name=function.get("name"),
                arguments=arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":")),
            )
            tool_calls += 1
        if chunk.get("done"):
            # Counts are omitted when zero (a fully cached prompt): absent is a reported 0.
            yield Usage(
                input_tokens=int(chunk.get("prompt_eval_count") or 0),
                output_tokens=int(chunk.get("eval_count") or 0),
            )
            yield Finish(_finish_reason(chunk.get("done_reason"), called_tools=tool_calls > 0))
            return


async def _only(chunk: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The non-streamed body as a stream of one answer object, so that chat_events reads both alike."""
    yield chunk


def ollama_chat_body(request: ChatRequest, config: ModelConfig) -> dict[str, Any]:
    """The JSON body of POST /api/chat for `request`; raises ProviderError for what Ollama cannot take."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    # OpenAI's tool messages carry only the call's id; Ollama wants the tool's name.
    tool_names = {call.id: call.name for m in request.messages for call in m.tool_calls if call.id}
    messages.extend(_message(message, tool_names) for message in request.messages)
    body: dict[str, Any] = {"model": config.upstream_name, "messages": messages, "stream": request.stream}
    # Ollama's options take OpenAI's names for these.
    options: dict[str, Any] = request.sampling()
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    if options:
        body["options"] = options
    response_format = request.response_format
    if response_format is not None and response_format.type == "json_object":
        body["format"] = "json"
    elif response_format is not None and response_format.type == "json_schema":
        body["format"] = response_format.schema or "json"
    tools = _tools(request)
    if tools:
        body["tools"] = [_tool(tool) for tool in tools]
    return body


def _message(message: Message, tool_names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        out["images"] = [_base64_image(image) for image in message.images]
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": call.name, "arguments": tool_arguments_object(call.arguments)}}
            for call in message.tool_calls
        ]
    if message.role == "tool":
        name = message.name or tool_names.get(message.tool_call_id or "")
        if name:
            out["tool_name"] = name
    return out


def _base64_image(image: str) -> str:
    if image.startswith(("http://", "https://")):
        raise ProviderError(ErrorKind.BAD_REQUEST, "Ollama takes images inline as base64, not by URL")
    if image.startswith("data:"):
        match = _DATA_URL.match(image)
        if match is None:
            raise ProviderError(ErrorKind.BAD_REQUEST, "Ollama takes only base64 data URLs")
        return image[match.end() :]
    return image


def _tools(request: ChatRequest) -> tuple[ToolSpec, ...]:
    choice = request.tool_choice
    if choice is None:
        return request.tools
    if choice.mode == "none":
        return ()
    if choice.mode == "function":
        return tuple(tool for tool in request.tools if tool.name == choice.name)
    return request.tools


def _tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    if tool.parameters:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


def _finish_reason(done_reason: Any, *, called_tools: bool) -> FinishReason:
    if done_reason == "length":
        return FinishReason.LENGTH
    # Ollama says `stop` after tool calls too; its own OpenAI layer rewrites it the same way.
    return FinishReason.TOOL_CALLS if called_tools else FinishReason.STOP


def _error_kind(status: int, message: str) -> ErrorKind:
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 408:
        return ErrorKind.TIMEOUT
    if status == 400 and _CONTEXT_MESSAGE.search(message):
        return ErrorKind.CONTEXT_TOO_LONG
    if status == 503:
        # Ollama answers 503 when its queue of pending requests is full.
        return ErrorKind.OVERLOADED
    if status >= 500:
        return ErrorKind.UNAVAILABLE
    return ErrorKind.BAD_REQUEST
