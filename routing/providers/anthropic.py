"""Anthropic Messages API (`POST {base_url}/messages`, base_url like https://api.anthropic.com/v1).

Translation choices worth knowing:

- Anthropic requires user and assistant turns to alternate, so consecutive
  turns of the same role (an OpenAI-style run of `tool` messages, or a tool
  result followed by a user message) are merged into one turn of blocks.
  Tool results become `tool_result` blocks of a user turn.
- `response_format` (json_object / json_schema) has no native counterpart in
  the wire format this adapter speaks (API version 2023-06-01 without beta
  headers), so it becomes an instruction appended to the system prompt,
  carrying the schema when there is one. The output is therefore not
  guaranteed to validate; callers that need a guarantee must check it.
- Input tokens are `input_tokens + cache_creation_input_tokens +
  cache_read_input_tokens`: Anthropic reports cached prompt tokens separately
  from `input_tokens`, and all of them are billed input, cache reads and
  writes at their own prices (Usage.cached_input_tokens, cache_write_tokens).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Mapping
from typing import Any

from routing.providers.base import (
    HttpAdapter,
    data_url_parts,
    decode_json,
    tool_arguments_object,
)
from routing.providers.errors import ErrorKind, ProviderError, retry_after_from_headers
from routing.providers.http import aiter_lines
from routing.providers.sse import aiter_sse
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    ResponseFormat,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

ANTHROPIC_VERSION = "2023-06-01"

_STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}

_ERROR_TYPES = {
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "overloaded_error": ErrorKind.OVERLOADED,
    "api_error": ErrorKind.UNAVAILABLE,
    "timeout_error": ErrorKind.TIMEOUT,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "billing_error": ErrorKind.AUTH,
    "not_found_error": ErrorKind.BAD_REQUEST,
    "request_too_large": ErrorKind.CONTEXT_TOO_LONG,
}

# Anthropic words a too-long prompt in several ways, e.g. "prompt is too
# long: 208310 tokens > 200000 maximum" or "input length and `max_tokens`
# exceed context limit".
_CONTEXT_MESSAGE = re.compile(
    r"prompt is too long|context (window|limit|length)|too many (input )?tokens", re.IGNORECASE
)

_MAX_MESSAGE_CHARS = 500


class AnthropicAdapter(HttpAdapter):
    async def _events(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        url = f"{self.config.base_url.rstrip('/')}/messages"
        headers = {"x-api-key": self.config.api_key, "anthropic-version": ANTHROPIC_VERSION}
        body = self.request_body(request)
        async with self.post(url, headers=headers, body=body) as response:
            if request.stream:
                async for event in _stream_events(aiter_lines(response)):
                    yield event
            else:
                raw = await response.read()
                message = decode_json(raw)
                if not isinstance(message, dict) or message.get("type") != "message":
                    # An error body answered with status 200 (as Anthropic's overloaded errors
                    # sometimes are) is that error, not an empty answer.
                    error_type, text = _error_fields(raw)
                    if error_type is None:
                        raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a malformed response")
                    raise _error(error_type, text, status_code=None, retry_after=None)
                for event in _message_events(message):
                    yield event

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        """The Messages API body for `request`."""
        body: dict[str, Any] = {
            "model": self.config.upstream_name,
            "max_tokens": request.max_tokens or self.config.max_output_tokens,
            "messages": _messages(request.messages),
        }
        system = _system_prompt(request.system, request.response_format)
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.user:
            body["metadata"] = {"user_id": request.user}
        if request.tools:
            body["tools"] = [_tool(tool) for tool in request.tools]
            choice = request.tool_choice
            if choice is not None or request.parallel_tool_calls is False:
                tool_choice = _tool_choice(choice.mode if choice else "auto", choice.name if choice else None)
                # Anthropic's choice carries OpenAI's parallel_tool_calls (not "none", which calls no tool).
                if request.parallel_tool_calls is False and tool_choice["type"] != "none":
                    tool_choice["disable_parallel_tool_use"] = True
                body["tool_choice"] = tool_choice
        if request.stream:
            body["stream"] = True
        return body

    def error_from_response(self, status_code: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        error_type, message = _error_fields(body)
        return _error(error_type, message, status_code=status_code, retry_after=retry_after_from_headers(headers))


def _system_prompt(system: str | None, response_format: ResponseFormat | None) -> str:
    parts = [system] if system else []
    if response_format is not None and response_format.type != "text":
        instruction = "Reply with a single JSON object and nothing else: no prose before or after it, no code fences."
        if response_format.type == "json_schema" and response_format.description:
            instruction += f" What it holds: {response_format.description}"
        if response_format.type == "json_schema" and response_format.schema is not None:
            schema = json.dumps(response_format.schema, ensure_ascii=False)
            instruction += f" The object must conform to this JSON Schema:\n{schema}"
        parts.append(instruction)
    return "\n\n".join(parts)


def _tool(tool: ToolSpec) -> dict[str, Any]:
    # input_schema is required and must describe an object, even for a tool
    # that takes no arguments.
    spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description:
        spec["description"] = tool.description
    return spec


def _tool_choice(mode: str, name: str | None) -> dict[str, Any]:
    if mode == "required":
        return {"type": "any"}
    if mode == "function" and name:
        return {"type": "tool", "name": name}
    if mode == "none":
        return {"type": "none"}
    return {"type": "auto"}


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        content = turn["content"]
        if not content:
            turn["content"] = ""
        elif len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
        if message.content:
            result["content"] = message.content
        return [result]
    blocks: list[dict[str, Any]] = [_image_block(url) for url in message.images]
    # Anthropic rejects empty text blocks.
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        arguments = tool_arguments_object(call.arguments)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = data_url_parts(url)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


async def _stream_events(lines: AsyncIterable[str]) -> AsyncIterator[Event]:
    input_counts: dict[str, int] = {}
    output_tokens = 0
    stop_reason: str | None = None
    tool_index_of_block: dict[int, int] = {}
    async for sse in aiter_sse(lines):
        if sse.event == "ping":
            continue
        data = decode_json(sse.data)
        if not isinstance(data, dict):
            raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a malformed chunk")
        kind = sse.event if sse.event != "message" else data.get("type", "")
        if kind == "error":
            error = data.get("error")
            if not isinstance(error, dict):
                error = {}
            raise _error(error.get("type"), error.get("message"), status_code=None, retry_after=None)
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage") or {}
            input_counts = _input_counts(usage)
            output_tokens = usage.get("output_tokens") or 0
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                tool_index = len(tool_index_of_block)
                tool_index_of_block[data.get("index", tool_index)] = tool_index
                yield ToolCallDelta(index=tool_index, id=block.get("id"), name=block.get("name"))
            elif block.get("type") == "text" and block.get("text"):
                yield TextDelta(block["text"])
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                yield TextDelta(delta["text"])
            elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                delta_index = tool_index_of_block.get(data.get("index", -1))
                if delta_index is not None:
                    yield ToolCallDelta(index=delta_index, arguments=delta["partial_json"])
        elif kind == "message_delta":
            stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
            usage = data.get("usage") or {}
            # message_delta counts are cumulative; newer API versions repeat
            # the input counts here too.
            output_tokens = usage.get("output_tokens") or output_tokens
            input_counts.update(_input_counts(usage))
        elif kind == "message_stop":
            yield _usage(input_counts, output_tokens)
            yield Finish(_STOP_REASONS.get(stop_reason or "", FinishReason.STOP))
            return


def _message_events(message: dict[str, Any]) -> Iterator[Event]:
    tool_index = 0
    for block in message.get("content") or []:
        if block.get("type") == "text" and block.get("text"):
            yield TextDelta(block["text"])
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            yield ToolCallDelta(index=tool_index, id=block.get("id"), name=block.get("name"), arguments=arguments)
            tool_index += 1
    usage = message.get("usage")
    if usage:
        yield _usage(_input_counts(usage), usage.get("output_tokens") or 0)
    yield Finish(_STOP_REASONS.get(message.get("stop_reason") or "", FinishReason.STOP))


def _input_counts(usage: dict[str, Any]) -> dict[str, int]:
    """The billed input counts `usage` reports: fresh input plus cache writes and reads."""
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return {key: usage[key] for key in keys if isinstance(usage.get(key), int)}


def _usage(input_counts: dict[str, int], output_tokens: int) -> Usage:
    return Usage(
        input_tokens=sum(input_counts.values()),
        output_tokens=output_tokens,
        cached_input_tokens=input_counts.get("cache_read_input_tokens", 0),
        cache_write_tokens=input_counts.get("cache_creation_input_tokens", 0),
    )


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        payload = json.loads(body)
    except ValueError:
        return None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None
    return error.get("type"), error.get("message")


def _error(
    error_type: str | None, message: str | None, *, status_code: int | None, retry_after: float | None
) -> ProviderError:
    kind = _error_kind(error_type, message or "", status_code)
    text = (message or f"Anthropic answered HTTP {status_code}")[:_MAX_MESSAGE_CHARS]
    return ProviderError(
        kind,
        text,
        status_code=status_code,
        retry_after=retry_after if kind in (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED) else None,
        provider_code=error_type,
    )


def _error_kind(error_type: str | None, message: str, status_code: int | None) -> ErrorKind:
    if error_type == "invalid_request_error" or (error_type is None and status_code == 400):
        return ErrorKind.CONTEXT_TOO_LONG if _CONTEXT_MESSAGE.search(message) else ErrorKind.BAD_REQUEST
    if error_type in _ERROR_TYPES:
        return _ERROR_TYPES[error_type]
    if status_code is None:
        return ErrorKind.UNAVAILABLE
    if status_code == 429:
        return ErrorKind.RATE_LIMITED
    if status_code in (503, 529):
        return ErrorKind.OVERLOADED
    if status_code == 413:
        return ErrorKind.CONTEXT_TOO_LONG
    if status_code in (401, 402, 403):
        return ErrorKind.AUTH
    if status_code in (408, 504):
        return ErrorKind.TIMEOUT
    if status_code >= 500:
        return ErrorKind.UNAVAILABLE
    return ErrorKind.BAD_REQUEST
