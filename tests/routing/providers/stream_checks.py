"""What every adapter test reads out of a stream of events."""

from __future__ import annotations

from routing.calls import worker_loop
from routing.providers.base import ProviderAdapter
from routing.providers.errors import ProviderError
from routing.providers.types import ChatRequest, Event, Finish, StreamError, TextDelta, ToolCallDelta, Usage


def collect(adapter: ProviderAdapter, request: ChatRequest) -> list[Event]:
    """Every event of one call, streamed on the worker's call loop as the workers do."""

    async def gather() -> list[Event]:
        return [event async for event in adapter.stream(request)]

    return worker_loop.run(gather())


def assert_contract(events: list[Event]) -> None:
    """(TextDelta | ToolCallDelta)* Usage (Finish | StreamError), nothing else."""
    assert sum(isinstance(event, Usage) for event in events) == 1
    assert sum(isinstance(event, Finish | StreamError) for event in events) == 1
    assert isinstance(events[-1], Finish | StreamError)
    assert isinstance(events[-2], Usage)
    assert all(isinstance(event, TextDelta | ToolCallDelta) for event in events[:-2])


def text_of(events: list[Event]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def usage_of(events: list[Event]) -> Usage:
    return next(event for event in events if isinstance(event, Usage))


def error_of(events: list[Event]) -> ProviderError:
    terminal = events[-1]
    assert isinstance(terminal, StreamError), terminal
    error: ProviderError = terminal.error
    return error
