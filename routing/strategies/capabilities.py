"""What a request needs of a model: the capability tags that a route's chain is filtered by."""

from __future__ import annotations

from routing.providers.types import ChatRequest

# Every tag needed_capabilities may ask for: what a usage record keeps of its call's needs (UsageRecord.needs).
NEEDED_TAGS = frozenset({"tools", "json", "vision"})


def needed_capabilities(request: ChatRequest) -> frozenset[str]:
    """Capability tags a model must carry to take this request."""
    needed = set()
    if request.tools and (request.tool_choice is None or request.tool_choice.mode != "none"):
        needed.add("tools")
    if request.response_format and request.response_format.type != "text":
        needed.add("json")
    if any(m.images for m in request.messages):
        needed.add("vision")
    return frozenset(needed)
