"""What strategies read off a request: the last user message, the whole prompt's length, code, images, tools.

Django-free and cheap: each is one pass over the messages' text.
"""

from __future__ import annotations

import re

from routing.providers.types import ChatRequest

# A fenced block, or a line that starts as code commonly does.
_CODE = re.compile(
    r"```|^[ \t]*(?:def |class |function |import |from \S+ import |#include|SELECT |public static |const |let |fn )",
    re.MULTILINE,
)


def last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return ""


def prompt_chars(request: ChatRequest) -> int:
    return len(request.system or "") + sum(len(message.content) for message in request.messages)


def has_code(request: ChatRequest) -> bool:
    return any(_CODE.search(message.content) for message in request.messages if message.role == "user")


def has_images(request: ChatRequest) -> bool:
    return any(message.images for message in request.messages)
