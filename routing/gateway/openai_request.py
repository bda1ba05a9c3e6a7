"""OpenAI's Chat Completions wire format coming into /v1: a request body parsed and checked into a ChatRequest.

The sampling parameters (temperature, top_p, the penalties, seed) go to each
provider that takes them, under its own names; a provider without one does
without it (Anthropic has no penalties or seed, Gemini gets no penalties,
which some of its models refuse). reasoning_effort goes only to the
OpenAI-compatible models tagged `reasoning` (the others refuse it), and
parallel_tool_calls to OpenAI-compatible providers and, as
disable_parallel_tool_use, to Anthropic. Parameters that no adapter maps
(logprobs, logit_bias, …) are dropped rather than passed through to fail
upstream.

Everything that reaches the worker is checked here, once: a value the worker
could not take (a non-string where a string belongs, a lone surrogate, which
has no UTF-8 form, JSON nested past MAX_DEPTH) is a 400 naming the field,
never a failed call or a 500.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from routing.providers.types import (
    ChatRequest,
    Message,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolSpec,
)


class InvalidRequest(Exception):
    """The body is not a valid chat completion request; `param` names the field.

    `code` is the one OpenAI gives for the same fault (invalid_type,
    missing_required_parameter, …), so a client that branches on it works here too.
    """

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param,
        "invalid_type",
    )


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _invalid_value(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param, "invalid_value")


def _string(item: dict[str, Any], name: str, where: str) -> str | None:
    """item[name] when it is a string, None when it is absent or null; any other value is refused."""
    value = item.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _invalid_type(f"{where}.{name}", "a string", value)


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    model: str
    request: ChatRequest
    stream: bool
    include_usage: bool
    # OpenAI's `metadata`: string keys and values, read by Switchyard (routing/gateway/hints.py), not sent upstream.
    metadata: dict[str, str] = field(default_factory=dict)


_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _not_json(constant: str) -> None:
    # Python reads NaN and Infinity, which JSON does not have: they would pass
    # every range check and then break the provider's parser.
    raise ValueError(f"{constant} is not a JSON value")


# One decoder: json.loads with an option builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_not_json)

# How deep the free-form JSON that travels on to a provider (tool parameters, a
# response schema, tool call arguments) may nest. Python's JSON encoder and
# decoder give up near 1000 levels less the depth of the stack they run on:
# without a limit, what the gateway could read might still fail in the worker,
# whose stack is deeper, or upstream.
MAX_DEPTH = 64

# Strict UTF-8 decoding refuses surrogates sent as raw bytes, so the only way
# a lone surrogate gets into the body is a \uD800-\uDFFF escape. A search for
# one costs well under a microsecond on a typical body; only a body that has
# one (an emoji escaped as a pair, say) is walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_chat_body(raw: bytes) -> ParsedRequest:
    try:
        body = _DECODER.decode(raw.decode())
    except RecursionError as exc:
        raise InvalidRequest("We could not parse the JSON body of your request: it is nested too deeply.") from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(raw):
        _refuse_lone_surrogates(body)
    model = body.get("model")
    if model is None or model == "":
        raise _missing("model")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    stream = _optional(body, "stream", bool) or False
    stream_options = _optional(body, "stream_options", dict) or {}
    include_usage = stream_options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise _invalid_type("stream_options.include_usage", "a boolean", include_usage)
    n = _optional(body, "n", int)
    if n is not None and n != 1:
        raise InvalidRequest(
            f"Unsupported value: 'n' must be 1 here, but got {n}.",
            "n",
            "unsupported_value",
        )
    system, messages = _messages(body.get("messages"))
    request = ChatRequest(
        messages=messages,
        system=system,
        temperature=_number_between(body, "temperature", 0, 2),
        top_p=_number_between(body, "top_p", 0, 1),
        frequency_penalty=_number_between(body, "frequency_penalty", -2, 2),
        presence_penalty=_number_between(body, "presence_penalty", -2, 2),
        sampling_seed=_optional(body, "seed", int),
        max_tokens=_max_tokens(body),
        stop=_stop(body.get("stop")),
        # A client that does not stream gets its answer in one piece anyway, so
        # the upstream call is not streamed either: one body to parse, not hundreds of chunks.
        stream=stream,
        user=_optional(body, "user", str),
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_optional(body, "parallel_tool_calls", bool),
        reasoning_effort=_optional(body, "reasoning_effort", str),
        response_format=_response_format(body.get("response_format")),
    )
    return ParsedRequest(
        model=model, request=request, stream=stream, include_usage=include_usage, metadata=_metadata(body)
    )


# OpenAI's limits on `metadata`.
METADATA_PAIRS = 16
METADATA_KEY_CHARS = 64
METADATA_VALUE_CHARS = 512


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    metadata = _optional(body, "metadata", dict) or {}
    if isinstance(cache := metadata.get("cache"), bool):
        # Switchyard's own switch reads naturally as JSON's true or false; OpenAI's SDKs send strings.
        metadata = metadata | {"cache": "true" if cache else "false"}
    if len(metadata) > METADATA_PAIRS:
        raise _invalid_value("metadata", f"'metadata' may hold at most {METADATA_PAIRS} keys.")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS:
            raise _invalid_value("metadata", f"A key of 'metadata' may be at most {METADATA_KEY_CHARS} characters.")
        if not isinstance(value, str):
            raise _invalid_type(f"metadata.{key}", "a string", value)
        if len(value) > METADATA_VALUE_CHARS:
            raise _invalid_value(
                f"metadata.{key}", f"A value of 'metadata' may be at most {METADATA_VALUE_CHARS} characters."
            )
    return metadata


_EXPECTED: dict[type, str] = {bool: "a boolean", int: "an integer", str: "a string", dict: "an object"}


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python; OpenAI rejects true for a number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        expected = _EXPECTED.get(kind, "a number") if isinstance(kind, type) else "a number"
        raise _invalid_type(name, expected, value)
    return value


def _number_between(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = _optional(body, name, (int, float))
    if value is None:
        return None
    if value < low:
        raise InvalidRequest(
            f"Invalid '{name}': decimal below minimum value. Expected a value >= {low}, but got {value} instead.",
            name,
            "decimal_below_min_value",
        )
    if value > high:
        raise InvalidRequest(
            f"Invalid '{name}': decimal above maximum value. Expected a value <= {high}, but got {value} instead.",
            name,
            "decimal_above_max_value",
        )
    return float(value)


def _max_tokens(body: dict[str, Any]) -> int | None:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value: int | None = _optional(body, name, int)
    if value is not None and value < 1:
        raise InvalidRequest(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    return value


def _json_type(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), "null")


def _refuse_lone_surrogates(body: dict[str, Any]) -> None:
    # Iterative, since the body may nest as deep as the decoder allowed; each
    # node carries its path as (parent's path, key), spelt out only on a find.
    stack: list[tuple[Any, tuple[Any, ...]]] = [(body, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                if _has_lone_surrogate(key):
                    raise _lone_surrogate(path, in_key=True)
                stack.append((item, (path, key)))
        elif isinstance(value, list):
            stack.extend((item, (path, i)) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, str) and _has_lone_surrogate(value):
            raise _lone_surrogate(path)


def _has_lone_surrogate(text: str) -> bool:
    # A surrogate is the only code point that UTF-8 has no encoding for.
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate(path: tuple[Any, ...], *, in_key: bool = False) -> InvalidRequest:
    # The keys on the path were all checked before the walk went below them:
    # the param, unlike the offending string itself, can be encoded.
    steps: list[Any] = []
    while path:
        path, step = path
        steps.append(step)
    param = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in reversed(steps)).lstrip(".")
    where = f"'{param}'" if param else "request body"
    what = "one of its keys holds" if in_key else "the string holds"
    return InvalidRequest(
        f"Invalid {where}: {what} a lone UTF-16 surrogate (\\ud800-\\udfff), which is not valid Unicode.",
        param or None,
        "invalid_value",
    )


def _check_depth(value: dict[str, Any] | list[Any], param: str, depth: int = 1) -> None:
    for child in value.values() if isinstance(value, dict) else value:
        if isinstance(child, (dict, list)):
            if depth == MAX_DEPTH:
                raise _invalid_value(param, f"Invalid '{param}': nested more than {MAX_DEPTH} levels deep.")
            _check_depth(child, param, depth + 1)


def _check_arguments_depth(arguments: str, param: str) -> None:
    # The adapters for Anthropic, Gemini and Ollama parse the arguments
    # string. Only a string with more brackets than MAX_DEPTH can nest
    # deeper, and counting them is much cheaper than parsing.
    if arguments.count("{") + arguments.count("[") <= MAX_DEPTH:
        return
    try:
        value = json.loads(arguments)
    except RecursionError:
        raise _invalid_value(param, f"Invalid '{param}': nested more than {MAX_DEPTH} levels deep.") from None
    except ValueError:
        return  # not JSON: the adapters that need an object refuse it, as the provider would
    if isinstance(value, (dict, list)):
        _check_depth(value, param)


def _text(content: Any, param: str) -> tuple[str, tuple[str, ...]]:
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise _invalid_type(param, "a string or an array of content parts", content)
    texts: list[str] = []
    images: list[str] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise _invalid_type(where, "an object", part)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _missing(f"{where}.text") if text is None else _invalid_type(f"{where}.text", "a string", text)
            texts.append(text)
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise _missing(f"{where}.image_url.url")
            images.append(url)
        else:
            raise _invalid_value(
                f"{where}.type",
                f"Invalid content part at '{where}': expected type text or image_url.",
            )
    return "\n".join(texts), tuple(images)


def _messages(raw: Any) -> tuple[str | None, tuple[Message, ...]]:
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list):
        raise _invalid_type("messages", "an array", raw)
    if not raw:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            "empty_array",
        )
    system: list[str] = []
    messages: list[Message] = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise _invalid_type(where, "an object", item)
        # Checked inline, not with _string: this runs for every message of a long conversation.
        role = item.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad_role(role, f"{where}.role")
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise _invalid_type(f"{where}.name", "a string", name)
        content = item.get("content")
        # Only an assistant message that calls tools may leave its content out, as OpenAI has it.
        if content is None and role != "assistant":
            raise _missing(f"{where}.content")
        text, images = _text(content, f"{where}.content")
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("tool", "function"):
            # A `function` message (the API's older form) names its call by `name`.
            call_id = _string(item, "tool_call_id", where) or name
            if call_id is None:
                raise _missing(f"{where}.tool_call_id")
            messages.append(
                Message(
                    role="tool",
                    content=text,
                    tool_call_id=call_id,
                    name=name,
                )
            )
        elif role == "assistant":
            tool_calls = _tool_calls(item, where)
            if content is None and not tool_calls:
                raise _missing(f"{where}.content")
            messages.append(Message(role="assistant", content=text, tool_calls=tool_calls))
        else:
            messages.append(Message(role="user", content=text, images=images, name=name))
    if not messages:
        raise _invalid_value(
            "messages",
            "'messages' must contain at least one user, assistant or tool message.",
        )
    return ("\n\n".join(system) if system else None), tuple(messages)


def _bad_role(role: Any, param: str) -> InvalidRequest:
    if role is None:
        return _missing(param)
    if not isinstance(role, str):
        return _invalid_type(param, "a string", role)
    return _invalid_value(
        param,
        f"Invalid value for '{param}': expected one of system, developer, user, assistant, tool.",
    )


def _tool_calls(item: dict[str, Any], where: str) -> tuple[ToolCall, ...]:
    raw = item.get("tool_calls") or []
    if not isinstance(raw, list):
        raise _invalid_type(f"{where}.tool_calls", "an array", raw)
    calls = []
    # Checked inline, each param spelt out only on a fault: a long agent conversation holds many calls.
    for j, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(fn, dict) or not isinstance(name, str):
            param = f"{where}.tool_calls[{j}].function.name"
            raise _missing(param) if name is None else _invalid_type(param, "a string", name)
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise _invalid_type(f"{where}.tool_calls[{j}].id", "a string", call_id)
        arguments = fn.get("arguments", "")
        if not isinstance(arguments, str):
            if isinstance(arguments, (dict, list)):
                _check_depth(arguments, f"{where}.tool_calls[{j}].function.arguments")
            arguments = json.dumps(arguments)
        elif len(arguments) > MAX_DEPTH:
            _check_arguments_depth(arguments, f"{where}.tool_calls[{j}].function.arguments")
        calls.append(ToolCall(id=call_id or f"call_{j}", name=name, arguments=arguments))
    return tuple(calls)


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise _invalid_type("stop", "a string or an array of strings", raw)
    if len(raw) > 4:
        raise InvalidRequest(
            f"Invalid 'stop': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(raw)} instead.",
            "stop",
            "array_above_max_length",
        )
    return tuple(raw)


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _invalid_type("tools", "an array", raw)
    tools = []
    for i, tool in enumerate(raw):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _invalid_value(
                f"tools[{i}]",
                f"Invalid value for 'tools[{i}]': expected a function tool.",
            )
        where = f"tools[{i}].function"
        name = _string(fn, "name", where)
        if not name:
            raise _missing(f"{where}.name")
        parameters = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise _invalid_type(f"{where}.parameters", "an object", parameters)
        _check_depth(parameters, f"{where}.parameters")
        tools.append(
            ToolSpec(
                name=name,
                description=_string(fn, "description", where) or "",
                parameters=parameters,
            )
        )
    return tuple(tools)


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict) and isinstance(raw["function"].get("name"), str):
        return ToolChoice(mode="function", name=raw["function"]["name"])
    raise _invalid_value(
        "tool_choice",
        "Invalid value for 'tool_choice': expected none, auto, required or a function object.",
    )


def _response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        raise _invalid_value(
            "response_format.type",
            "Invalid value for 'response_format.type': expected text, json_object or json_schema.",
        )
    if raw["type"] != "json_schema":
        return ResponseFormat(type=raw["type"])
    spec = raw.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _missing("response_format.json_schema.name")
    schema = spec.get("schema") or {}
    if not isinstance(schema, dict):
        raise _invalid_type("response_format.json_schema.schema", "an object", schema)
    _check_depth(schema, "response_format.json_schema.schema")
    description = spec.get("description") or ""
    if not isinstance(description, str):
        raise _invalid_type("response_format.json_schema.description", "a string", description)
    return ResponseFormat(
        type="json_schema",
        schema=schema,
        name=spec["name"],
        description=description,
        strict=bool(spec.get("strict")),
    )
