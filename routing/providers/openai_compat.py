"""OpenAI Chat Completions, and every provider that copies its wire format.

One adapter serves OpenAI, DeepSeek, Qwen, Mistral, vLLM, OpenRouter and the
like: `POST {base_url}/chat/completions` with `Authorization: Bearer <key>`,
where `base_url` already ends in `/v1`.

Model options read here:
    max_tokens_field  the body field for ChatRequest.max_tokens: `max_tokens`
                      (default) or `max_completion_tokens` (OpenAI reasoning
                      models refuse `max_tokens`).
    seed_field        the body field for the client's sampling seed: `seed`
                      (default) or `random_seed` (Mistral, which refuses
                      fields it does not know).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Mapping
from typing import Any

from routing.providers.base import HttpAdapter, decode_json, decode_json_object
from routing.providers.errors import ErrorKind, ProviderError, retry_after_from_headers
from routing.providers.http import aiter_lines
from routing.providers.sse import aiter_sse
from routing.providers.types import (
    ChatRequest,
    Event,
    Finish,
    FinishReason,
    Message,
    ModelConfig,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    # Mistral reports a prompt that filled the context window this way.
    "model_length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}

_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
# Compatible servers (vLLM, DeepSeek, Mistral) refuse long prompts with a plain
# 400 and only say so in the message.
_CONTEXT_MESSAGE = re.compile(
    r"context[ _](?:length|window)|maximum context|prompt is too long|too many (?:input )?tokens",
    re.IGNORECASE,
)
# "Please try again in 26.604s", "… in 20ms", "… in 6m0s" (Go durations).
_TRY_AGAIN = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class OpenAICompatAdapter(HttpAdapter):
    async def _events(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        body = chat_completion_body(request, self.config)
        async with self.post(url, headers=self._headers(), body=body) as response:
            try:
                if request.stream:
                    async for event in self._stream_events(aiter_lines(response)):
                        yield event
                else:
                    for event in self._completion_events(decode_json_object(await response.read())):
                        yield event
            except (AttributeError, TypeError) as exc:
                # Valid JSON of the wrong shape (a list where an object belongs) breaks the stream too.
                raise ProviderError(ErrorKind.UNAVAILABLE, "the provider sent a chunk of an unexpected shape") from exc

    def _headers(self) -> dict[str, str]:
        if not self.config.api_key:
            return {}
        return {"authorization": f"Bearer {self.config.api_key}"}

    async def _stream_events(self, lines: AsyncIterable[str]) -> AsyncIterator[Event]:
        """Events of an SSE stream; Finish waits for the end so that the usage chunk after it is not lost."""
        finish: FinishReason | None = None
        done = False
        async for sse in aiter_sse(lines):
            if sse.data.strip() == "[DONE]":
                done = True
                break
            chunk = decode_json_object(sse.data)
            if chunk.get("error"):
                raise self._error(None, {}, chunk)
            if usage := _usage(chunk.get("usage")):
                yield usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if content := _text(delta.get("content")):
                    yield TextDelta(content)
                for position, call in enumerate(delta.get("tool_calls") or ()):
                    function = call.get("function") or {}
                    index = call.get("index")
                    yield ToolCallDelta(
                        # Some compatible servers leave out the index of a lone call.
                        index=index if isinstance(index, int) else position,
                        id=call.get("id"),
                        name=function.get("name"),
                        arguments=function.get("arguments") or "",
                    )
                if reason := choice.get("finish_reason"):
                    finish = _finish_reason(reason)
        if finish is None and not done:
            # Cut off before the model finished: stream() reports it as unavailable.
            return
        yield Finish(finish or FinishReason.STOP)

    def _completion_events(self, body: dict[str, Any]) -> Iterator[Event]:
        if body.get("error"):
            raise self._error(None, {}, body)
        choices = body.get("choices") or []
        if not choices:
            raise ProviderError(ErrorKind.UNAVAILABLE, "the provider answered without a choice")
        choice = choices[0]
        message = choice.get("message") or {}
        if content := _text(message.get("content")):
            yield TextDelta(content)
        for index, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            yield ToolCallDelta(
                index=index,
                id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        if usage := _usage(body.get("usage")):
            yield usage
        yield Finish(_finish_reason(choice.get("finish_reason") or "stop"))

    def error_from_response(self, status_code: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            parsed = decode_json(body)
        except ProviderError:
            parsed = None
        # A proxy in front of the provider may answer with HTML: the status alone decides.
        return self._error(status_code, headers, parsed if isinstance(parsed, dict) else {})

    def _error(self, status: int | None, headers: Mapping[str, str], body: dict[str, Any]) -> ProviderError:
        error_type, code, message = _error_fields(body)
        # OpenRouter puts the HTTP status of a mid-stream failure in `code`.
        if status is None and code.isdigit():
            status = int(code)
        kind = _error_kind(status, error_type, code, message)
        retry_after = None
        if kind is ErrorKind.RATE_LIMITED:
            retry_after = retry_after_from_headers(headers)
            if retry_after is None:
                retry_after = _retry_after_from_message(message)
        if not message:
            message = f"the provider answered HTTP {status}" if status else "the provider reported an error"
        # Some compatible servers echo the key they refused. Placeholder keys of
        # local servers ("EMPTY", "x") are too short to be secrets or to replace safely.
        if len(self.config.api_key) >= 8:
            message = message.replace(self.config.api_key, "[redacted]")
        return ProviderError(
            kind,
            message,
            status_code=status,
            retry_after=retry_after,
            provider_code=code or error_type or None,
        )


def chat_completion_body(request: ChatRequest, config: ModelConfig) -> dict[str, Any]:
    """The JSON body of POST /chat/completions for `request`."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(_message(message) for message in request.messages)
    body: dict[str, Any] = {"model": config.upstream_name, "messages": messages}
    sampling = request.sampling()
    if "seed" in sampling:
        sampling[config.options.get("seed_field", "seed")] = sampling.pop("seed")
    body |= sampling
    if request.max_tokens is not None:
        body[config.options.get("max_tokens_field", "max_tokens")] = request.max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    if request.user:
        body["user"] = request.user
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.tools and request.parallel_tool_calls is not None:
        # OpenAI refuses it in a request without tools.
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.reasoning_effort and "reasoning" in config.capabilities:
        body["reasoning_effort"] = request.reasoning_effort
    if request.response_format is not None and request.response_format.type != "text":
        response_format = request.response_format
        if response_format.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        else:
            json_schema: dict[str, Any] = {"name": response_format.name or "response"}
            if response_format.description:
                json_schema["description"] = response_format.description
            json_schema |= {"schema": response_format.schema or {}, "strict": response_format.strict}
            body["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    body["stream"] = request.stream
    if request.stream:
        # Without it the stream carries no token counts at all.
        body["stream_options"] = {"include_usage": True}
    return body


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role}
    if message.images:
        parts: list[dict[str, Any]] = []
        if message.content:
            parts.append({"type": "text", "text": message.content})
        parts.extend({"type": "image_url", "image_url": {"url": url}} for url in message.images)
        out["content"] = parts
    elif message.tool_calls and not message.content:
        out["content"] = None
    else:
        out["content"] = message.content
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.name:
        out["name"] = message.name
    return out


def _tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    if tool.parameters:
        function["parameters"] = tool.parameters
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode == "function":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _text(content: Any) -> str:
    """The text of `content`: a string, or (Mistral's reasoning models) a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    return ""


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    # Parts of the totals; compatible servers may send the details as null, or not at all.
    cached = _detail(usage.get("prompt_tokens_details"), "cached_tokens")
    reasoning = _detail(usage.get("completion_tokens_details"), "reasoning_tokens")
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cached_input_tokens=min(cached, prompt),
        reasoning_tokens=min(reasoning, completion),
    )


def _detail(details: Any, name: str) -> int:
    count = details.get(name) if isinstance(details, dict) else None
    return count if isinstance(count, int) and count > 0 else 0


def _finish_reason(value: str) -> FinishReason:
    return _FINISH_REASONS.get(value, FinishReason.STOP)


def _error_fields(body: dict[str, Any]) -> tuple[str, str, str]:
    """(type, code, message) of an error body, in OpenAI's shape or a compatible server's variant."""
    error = body.get("error", body)
    if isinstance(error, str):
        return "", "", error
    if not isinstance(error, dict):
        return "", "", ""
    message = error.get("message") or error.get("detail") or ""
    return str(error.get("type") or ""), str(error.get("code") or ""), str(message)


def _error_kind(status: int | None, error_type: str, code: str, message: str) -> ErrorKind:
    """Map a failure to a kind; `status` is None for an error event inside a 200 stream."""
    if code in _CONTENT_FILTER_CODES or error_type in _CONTENT_FILTER_CODES:
        return ErrorKind.CONTENT_FILTERED
    if "insufficient_quota" in (code, error_type):
        # The account is out of credit: waiting does not help, another provider may.
        return ErrorKind.AUTH
    if status == 429 or code == "rate_limit_exceeded":
        return ErrorKind.RATE_LIMITED
    client_error = status is None or 400 <= status < 500
    if code == "context_length_exceeded" or (client_error and _CONTEXT_MESSAGE.search(message)):
        return ErrorKind.CONTEXT_TOO_LONG
    if status in (401, 403) or code == "invalid_api_key" or error_type == "authentication_error":
        return ErrorKind.AUTH
    if status == 408:
        return ErrorKind.TIMEOUT
    overloaded = "overloaded" in message.lower()
    if status is None:
        if error_type == "invalid_request_error":
            return ErrorKind.BAD_REQUEST
        return ErrorKind.OVERLOADED if overloaded else ErrorKind.UNAVAILABLE
    if status == 503 and overloaded:
        return ErrorKind.OVERLOADED
    if status >= 500:
        return ErrorKind.UNAVAILABLE
    return ErrorKind.BAD_REQUEST


def _retry_after_from_message(message: str) -> float | None:
    match = _TRY_AGAIN.search(message)
    if match is None:
        return None
    return sum(float(amount) * _SECONDS_PER_UNIT[unit] for amount, unit in _DURATION_PART.findall(match.group(1)))
