"""Google Gemini API (generateContent, base_url like https://generativelanguage.googleapis.com/v1beta).

Streams always use `:streamGenerateContent?alt=sse`: without `alt=sse` the
method streams one JSON array instead of server-sent events.

Translation choices worth knowing:

- Structured output uses `responseJsonSchema` and tools use
  `parametersJsonSchema`, the fields the current API documents as taking
  JSON Schema. The older `responseSchema` / `parameters` take an OpenAPI 3.0
  subset that rejects common JSON Schema keywords (for example
  `additionalProperties`), and callers here send OpenAI-style JSON Schema.
- Gemini tool calls carry no id on most models, so one is made up per call;
  a tool result is matched back to its function by the id of the earlier
  assistant tool call it answers.
- Output tokens are `candidatesTokenCount + thoughtsTokenCount`: thinking
  tokens are reported separately but billed as output (Usage.reasoning_tokens).
  `cachedContentTokenCount` is a part of `promptTokenCount`, billed at the
  cached input price (Usage.cached_input_tokens).
"""

from __future__ import annotations

import json
import mimetypes
import re
import urllib.parse
import uuid
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
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)

_CONTENT_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}

# e.g. "The input token count (1200000) exceeds the maximum number of tokens
# allowed (1048576)."
_CONTEXT_MESSAGE = re.compile(
    r"token count|maximum number of tokens|context (window|length)|too many tokens|(input|prompt) is too long",
    re.IGNORECASE,
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_SSE_FIELDS = (":", "event:", "id:", "retry:")
_MAX_MESSAGE_CHARS = 500


class GeminiAdapter(HttpAdapter):
    async def _events(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        model = self.config.upstream_name.removeprefix("models/")
        base = f"{self.config.base_url.rstrip('/')}/models/{model}"
        url = f"{base}:streamGenerateContent?alt=sse" if request.stream else f"{base}:generateContent"
        headers = {"x-goog-api-key": self.config.api_key}
        answer = _Answer()
        async with self.post(url, headers=headers, body=self.request_body(request)) as response:
            if request.stream:
                async for chunk in _stream_chunks(aiter_lines(response)):
                    for event in answer.feed(chunk):
                        yield event
            else:
                for event in answer.feed(decode_json(await response.read())):
                    yield event
        for event in answer.finish():
            yield event

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        """The generateContent body for `request` (the model is named in the URL)."""
        body: dict[str, Any] = {"contents": _contents(request.messages)}
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        generation: dict[str, Any] = {}
        if request.temperature is not None:
            generation["temperature"] = request.temperature
        if request.top_p is not None:
            generation["topP"] = request.top_p
        if request.sampling_seed is not None:
            generation["seed"] = request.sampling_seed
        if request.max_tokens:
            generation["maxOutputTokens"] = request.max_tokens
        if request.stop:
            generation["stopSequences"] = list(request.stop)
        response_format = request.response_format
        if response_format is not None and response_format.type != "text":
            generation["responseMimeType"] = "application/json"
            if response_format.type == "json_schema" and response_format.schema is not None:
                generation["responseJsonSchema"] = response_format.schema
        if generation:
            body["generationConfig"] = generation
        if request.tools:
            body["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in request.tools]}]
            if request.tool_choice is not None:
                body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
        return body

    def error_from_response(self, status_code: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        return _error(payload, status_code=status_code, headers=headers)


def _declaration(tool: ToolSpec) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    if tool.parameters:
        declaration["parametersJsonSchema"] = tool.parameters
    return declaration


def _calling_config(choice: ToolChoice) -> dict[str, Any]:
    config: dict[str, Any] = {"mode": _TOOL_MODES[choice.mode]}
    if choice.mode == "function" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return config


def _contents(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    function_names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            name = function_names.get(message.tool_call_id or "") or message.name or ""
            role, parts = "user", [_function_response(name, message.content)]
        elif message.role == "assistant":
            role, parts = "model", []
            for call in message.tool_calls:
                function_names[call.id] = call.name
                parts.append({"functionCall": {"name": call.name, "args": tool_arguments_object(call.arguments)}})
            if message.content or not parts:
                parts.insert(0, {"text": message.content})
        else:
            role, parts = "user", [_image_part(url) for url in message.images]
            if message.content or not parts:
                parts.append({"text": message.content})
        # Parallel tool results belong in one turn, and Gemini expects the
        # roles to alternate.
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _function_response(name: str, content: str) -> dict[str, Any]:
    try:
        value: Any = json.loads(content)
    except ValueError:
        value = content
    return {"functionResponse": {"name": name, "response": {"content": value}}}


def _image_part(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        mime_type, payload = data_url_parts(url)
        return {"inlineData": {"mimeType": mime_type, "data": payload}}
    guessed, _ = mimetypes.guess_type(urllib.parse.urlparse(url).path)
    return {"fileData": {"fileUri": url, "mimeType": guessed or "image/jpeg"}}


class _Answer:
    """Turns GenerateContentResponse chunks into events; `finish` closes the answer."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.tool_calls = 0

    def feed(self, chunk: Any) -> Iterator[Event]:
        if not isinstance(chunk, dict):
            raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a malformed chunk")
        if "error" in chunk:
            raise _error(chunk, status_code=None, headers=None)
        metadata = chunk.get("usageMetadata")
        if metadata and "promptTokenCount" in metadata:
            # Cumulative on every chunk: the last one holds the totals.
            prompt = metadata.get("promptTokenCount") or 0
            thoughts = metadata.get("thoughtsTokenCount") or 0
            self.usage = Usage(
                input_tokens=prompt + (metadata.get("toolUsePromptTokenCount") or 0),
                output_tokens=(metadata.get("candidatesTokenCount") or 0) + thoughts,
                cached_input_tokens=min(metadata.get("cachedContentTokenCount") or 0, prompt),
                reasoning_tokens=thoughts,
            )
        candidates = chunk.get("candidates") or []
        if not candidates:
            block_reason = (chunk.get("promptFeedback") or {}).get("blockReason")
            if block_reason:
                raise ProviderError(
                    ErrorKind.CONTENT_FILTERED, f"the prompt was blocked ({block_reason})", provider_code=block_reason
                )
            return
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            if part.get("thought"):
                continue
            if "functionCall" in part:
                call = part["functionCall"] or {}
                yield ToolCallDelta(
                    index=self.tool_calls,
                    id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                    name=call.get("name"),
                    arguments=json.dumps(call.get("args") or {}, ensure_ascii=False),
                )
                self.tool_calls += 1
            elif part.get("text"):
                yield TextDelta(part["text"])
        self.finish_reason = candidate.get("finishReason") or self.finish_reason

    def finish(self) -> Iterator[Event]:
        """Usage and Finish, or nothing when no chunk said the answer was complete."""
        if self.finish_reason is None:
            return
        if self.usage is not None:
            yield self.usage
        yield Finish(self._reason())

    def _reason(self) -> FinishReason:
        if self.finish_reason == "MAX_TOKENS":
            return FinishReason.LENGTH
        if self.finish_reason in _CONTENT_FILTER_REASONS:
            return FinishReason.CONTENT_FILTER
        if self.finish_reason == "STOP" and self.tool_calls:
            return FinishReason.TOOL_CALLS
        return FinishReason.STOP


async def _stream_chunks(lines: AsyncIterable[str]) -> AsyncIterator[Any]:
    """Parsed JSON chunks of an `alt=sse` body.

    Chunks come as `data:` lines, but an error may arrive as pretty-printed
    JSON without any prefix (seen from Vertex AI); like python-genai, such
    lines are gathered until their brackets balance.
    """
    data: list[str] = []
    bare: list[str] = []
    balance = _BracketBalance()
    async for line in lines:
        if not bare and (line.startswith("data:") or line.startswith(_SSE_FIELDS) or not line.strip()):
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif not line.strip() and data:
                yield decode_json("\n".join(data))
                data = []
            continue
        if data:
            yield decode_json("\n".join(data))
            data = []
        bare.append(line)
        balance.feed(line)
        if balance.closed:
            yield decode_json("\n".join(bare))
            bare = []
            balance = _BracketBalance()
    # python-genai also takes a final `data:` line that no blank line ended.
    if data:
        yield decode_json("\n".join(data))
    if bare:
        raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a malformed chunk")


class _BracketBalance:
    """Counts JSON brackets outside string literals."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    @property
    def closed(self) -> bool:
        return self.depth <= 0 and not self.in_string

    def feed(self, text: str) -> None:
        for char in text:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1


def _error(payload: Any, *, status_code: int | None, headers: Mapping[str, str] | None) -> ProviderError:
    if isinstance(payload, list) and payload:
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = status_code or (error.get("code") if isinstance(error.get("code"), int) else None)
    status = error.get("status") or ""
    message = error.get("message") or ""
    details = [detail for detail in error.get("details") or [] if isinstance(detail, dict)]
    reasons = {detail.get("reason") for detail in details}
    kind = _error_kind(code, status, message, reasons)
    retry_after = None
    if kind is ErrorKind.RATE_LIMITED or kind is ErrorKind.OVERLOADED:
        retry_after = _retry_delay(details)
        if retry_after is None and headers is not None:
            retry_after = retry_after_from_headers(headers)
    reason = next((r for r in reasons if r), None)
    return ProviderError(
        kind,
        (message or f"Gemini answered HTTP {code}")[:_MAX_MESSAGE_CHARS],
        status_code=code,
        retry_after=retry_after,
        provider_code=reason or status or None,
    )


def _error_kind(code: int | None, status: str, message: str, reasons: set[Any]) -> ErrorKind:
    if "API_KEY_INVALID" in reasons or status in ("UNAUTHENTICATED", "PERMISSION_DENIED") or code in (401, 403):
        return ErrorKind.AUTH
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        return ErrorKind.RATE_LIMITED
    if code == 503 or status == "UNAVAILABLE":
        return ErrorKind.OVERLOADED
    if code == 504 or status == "DEADLINE_EXCEEDED":
        return ErrorKind.TIMEOUT
    if code == 413:
        return ErrorKind.CONTEXT_TOO_LONG
    if code == 400 or status in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"):
        return ErrorKind.CONTEXT_TOO_LONG if _CONTEXT_MESSAGE.search(message) else ErrorKind.BAD_REQUEST
    if code is None or code >= 500 or code == 499:
        return ErrorKind.UNAVAILABLE
    return ErrorKind.BAD_REQUEST


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for detail in details:
        match = _DURATION.match(str(detail.get("retryDelay") or ""))
        if match:
            return float(match.group(1))
    return None
