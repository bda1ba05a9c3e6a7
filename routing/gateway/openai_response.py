"""OpenAI's Chat Completions wire format going out of /v1: completion bodies, usage and stream chunks."""

from __future__ import annotations

import json
import time
from typing import Any

from routing.calls.events import Done, Figures, ToolPiece


def completion_body(call_id: str, created: int, done: Done) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": done.content or None, "refusal": None}
    if done.tool_calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in done.tool_calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": call_id,
        "object": "chat.completion",
        "created": created,
        "model": done.figures.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": done.finish}],
        "usage": usage_body(done.figures),
        "system_fingerprint": None,
    }


def usage_body(figures: Figures) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": figures.input_tokens,
        "completion_tokens": figures.output_tokens,
        "total_tokens": figures.input_tokens + figures.output_tokens,
        # As OpenAI reports them, whichever provider answered: parts of prompt_tokens and completion_tokens.
        "prompt_tokens_details": {"cached_tokens": figures.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": figures.reasoning_tokens},
    }
    if figures.cost is not None:
        # The booked cost in USD where OpenRouter puts it, so that a stream, whose
        # headers went out before it was known, tells it too. A JSON number is a
        # double to every client; a booked cost (10 decimal places, below
        # $100,000) has at most 15 significant digits, which a double keeps as written.
        body["cost"] = float(figures.cost)
    # Every model tried and how it went (x-switchyard-attempts), which a stream's headers cannot hold whole.
    body["attempts"] = [{"model": a["model"], "outcome": a["outcome"]} for a in figures.attempts]
    return body


class ChunkWriter:
    """Renders stream events as `data: {chunk}\\n\\n` lines, as OpenAI sends them."""

    def __init__(self, call_id: str, model: str) -> None:
        self.call_id = call_id
        self.model = model
        self.created = int(time.time())
        self._prefix = f'{{"id":"{call_id}","object":"chat.completion.chunk","created":{self.created},"model":'

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        body = json.dumps(
            {"choices": choices, "usage": usage, "system_fingerprint": None}, separators=(",", ":"), ensure_ascii=False
        )
        return f"data: {self._prefix}{json.dumps(self.model)},{body[1:]}\n\n".encode()

    def role(self) -> bytes:
        return self._chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
        )

    def text(self, text: str) -> bytes:
        return self._chunk([{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}])

    def tool(self, piece: ToolPiece) -> bytes:
        call: dict[str, Any] = {"index": piece.index}
        if piece.id:
            call["id"] = piece.id
            call["type"] = "function"
        function: dict[str, str] = {"arguments": piece.arguments}
        if piece.name:
            function["name"] = piece.name
        call["function"] = function
        return self._chunk([{"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}])

    def finish(self, reason: str) -> bytes:
        return self._chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}])

    def usage(self, figures: Figures) -> bytes:
        return self._chunk([], usage_body(figures))

    @staticmethod
    def error(message: str, kind: str, code: str | None = None) -> bytes:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
