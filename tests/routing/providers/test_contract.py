"""What every provider adapter promises (routing/providers/base.py), tested once for every kind.

Each test runs for each provider kind whose profile (contract.py) can play
its scenario; what is particular to one kind is tested in that kind's own
file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import json
import socket
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, cast

import pytest

from routing.calls import worker_loop
from routing.providers.errors import ErrorKind
from routing.providers.registry import adapter_for
from routing.providers.types import ChatRequest, Event, Finish, TextDelta, ToolCallDelta
from tests.routing.providers.contract import (
    COUNTED,
    PAUSE_SECONDS,
    PLAIN,
    PROFILES,
    SAMPLED,
    Answer,
    Backend,
    Call,
    Failure,
    Profile,
    counted_usage,
    estimated_usage,
)
from tests.routing.providers.stream_checks import error_of, text_of, usage_of

ContractTest = Callable[..., None]


def each_kind(having: Callable[[Profile], Any] = lambda profile: True) -> Callable[[ContractTest], ContractTest]:
    """Run the test for each kind whose profile has what `having` asks for."""

    def parametrize(test: ContractTest) -> ContractTest:
        params = [pytest.param(profile.kind, id=profile.kind) for profile in PROFILES.values() if having(profile)]
        return pytest.mark.parametrize("backend", params, indirect=True)(test)

    return parametrize


def each_case(cases: Callable[[Profile], Iterable[Any]]) -> Callable[[ContractTest], ContractTest]:
    """Run the test for each case of each kind's profile, as `case`; a case is named by `.name` or its first item."""

    def parametrize(test: ContractTest) -> ContractTest:
        params = [
            pytest.param(profile.kind, case, id=f"{profile.kind}-{getattr(case, 'name', None) or case[0]}")
            for profile in PROFILES.values()
            for case in cases(profile)
        ]
        return pytest.mark.parametrize(("backend", "case"), params, indirect=["backend"])(test)

    return parametrize


def has_upstream(profile: Profile) -> bool:
    return profile.fake_class is not None


def assert_answer(events: list[Event], answer: Answer) -> None:
    """Text deltas, tool call deltas, usage and finish as `answer` says."""
    assert all(event.text for event in events if isinstance(event, TextDelta)), "an empty text delta"
    if answer.text is None:
        assert text_of(events)
    else:
        assert text_of(events) == answer.text
    assert_calls([event for event in events if isinstance(event, ToolCallDelta)], answer.calls)
    usage = counted_usage(answer.request, events) if answer.usage is COUNTED else answer.usage
    assert usage_of(events) == usage
    assert events[-1] == Finish(answer.finish)


def assert_calls(deltas: list[ToolCallDelta], calls: tuple[Call, ...]) -> None:
    """Call i arrives as deltas of index i: id and name on the first, argument fragments on the others."""
    assert sorted({delta.index for delta in deltas}) == list(range(len(calls)))
    for index, call in enumerate(calls):
        first, *rest = [delta for delta in deltas if delta.index == index]
        assert first.id is not None and fnmatch.fnmatchcase(first.id, call.id), first.id
        assert first.name == call.name
        if call.whole:
            assert rest == []
        else:
            assert first.arguments == ""
            assert rest
        assert all(delta.id is None and delta.name is None and delta.arguments for delta in rest)
        arguments = first.arguments + "".join(delta.arguments for delta in rest)
        if call.arguments is None:
            assert isinstance(json.loads(arguments), dict)
        else:
            assert arguments == call.arguments


def assert_failure(backend: Backend, events: list[Event], failure: Failure, request: ChatRequest) -> None:
    """The text before the failure, an estimated usage, and the error that `failure` says."""
    if failure.text is not None:
        assert text_of(events) == failure.text
    assert usage_of(events) == estimated_usage(request, events)
    error = error_of(events)
    assert error.kind is failure.kind
    assert error.status_code == failure.status_code
    if failure.retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(failure.retry_after)
    assert error.provider_code == failure.provider_code
    if failure.message is not None:
        assert error.message == failure.message
    key = backend.profile.api_key
    if key:
        assert key not in error.message
        assert key not in repr(error)


@each_kind()
def test_the_registry_builds_the_adapter_of_its_kind(backend: Backend) -> None:
    assert type(adapter_for(backend.adapter().config)) is backend.profile.adapter_class


@each_kind()
def test_it_streams_text_then_usage_then_finish(backend: Backend) -> None:
    answer = backend.profile.answer

    assert_answer(backend.play(answer.setup, answer.request), answer)


@pytest.mark.parametrize("chunk_size", [1, 5, 7, 17, 100, 113])
@each_kind(has_upstream)
def test_it_reads_a_stream_split_at_any_byte_boundary(backend: Backend, chunk_size: int) -> None:
    answer = backend.profile.answer

    assert_answer(backend.play(answer.setup, answer.request, chunk_size=chunk_size), answer)


@each_kind()
def test_it_reads_a_non_streamed_answer(backend: Backend) -> None:
    answer = backend.profile.completion

    assert_answer(backend.play(answer.setup, answer.request), answer)


@each_case(lambda profile: profile.tool_answers)
def test_it_yields_tool_calls_as_tool_call_deltas(backend: Backend, case: Answer) -> None:
    assert_answer(backend.play(case.setup, case.request), case)


@pytest.mark.parametrize("chunk_size", [0, 7])
@each_case(lambda profile: profile.usage_details)
def test_it_reports_the_cached_cache_write_and_reasoning_parts_of_its_usage(
    backend: Backend, case: Answer, chunk_size: int
) -> None:
    assert_answer(backend.play(case.setup, case.request, chunk_size=chunk_size), case)


@each_case(lambda profile: profile.finish_reasons)
def test_it_maps_each_finish_reason(backend: Backend, case: tuple[str, Any]) -> None:
    reason, finish = case
    assert backend.profile.with_finish_reason is not None
    backend.queue(backend.profile.with_finish_reason(reason))

    assert backend.run()[-1] == Finish(finish)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "unstreamed"])
@each_kind(lambda profile: profile.sampled_body)
def test_it_sends_the_sampling_parameters_that_the_provider_takes(backend: Backend, stream: bool) -> None:
    profile = backend.profile

    backend.run(dataclasses.replace(SAMPLED, stream=stream))

    [sent] = backend.requests
    assert (sent.method, sent.path, sent.query) == ("POST", *(profile.target if stream else profile.unstreamed_target))
    assert sent.headers["content-type"] == "application/json"
    assert profile.sampled_body is not None
    body = dict(profile.sampled_body)
    assert sent.json() == (body if stream else profile.unstreamed(body))


@each_kind(lambda profile: profile.plain_body)
def test_it_sends_no_field_that_the_client_left_unset(backend: Backend) -> None:
    backend.run(PLAIN)

    assert backend.requests[0].json() == backend.profile.plain_body


@each_kind(has_upstream)
def test_it_sends_the_key_in_its_header_and_never_in_the_url(backend: Backend) -> None:
    profile = backend.profile
    header, value = profile.key_header

    backend.run(PLAIN)
    backend.run(dataclasses.replace(PLAIN, stream=False))

    assert len(backend.requests) == 2
    for sent in backend.requests:
        assert sent.headers[header] == value.format(key=profile.api_key)
        assert [name for name, value in sent.headers.items() if profile.api_key in value] == [header]
        assert profile.api_key not in sent.path + sent.query


@each_kind(lambda profile: profile.key_optional)
def test_it_sends_no_key_header_without_a_key(backend: Backend) -> None:
    backend.run(adapter=backend.adapter(api_key=""))

    assert backend.profile.key_header[0] not in backend.requests[0].headers


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "unstreamed"])
@each_case(lambda profile: profile.refusals)
def test_it_maps_an_error_answer_before_the_first_token(backend: Backend, case: Failure, stream: bool) -> None:
    request = dataclasses.replace(backend.question, stream=stream)

    events = backend.play(case.setup, request)

    assert len(events) == 2, events
    assert_failure(backend, events, case, request)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "unstreamed"])
@each_kind()
def test_it_times_out_when_the_first_byte_is_late(backend: Backend, stream: bool) -> None:
    timeout = backend.profile.timeout
    request = dataclasses.replace(backend.question, stream=stream)

    events = backend.play(timeout.setup, request)

    assert len(events) == 2, events
    assert_failure(backend, events, timeout, request)


@each_kind(has_upstream)
def test_it_reports_a_refused_connection_as_unavailable(backend: Backend) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    adapter = backend.adapter(base_url=f"http://127.0.0.1:{closed_port}{backend.profile.base_path}")

    events = backend.run(adapter=adapter)

    assert len(events) == 2, events
    assert usage_of(events) == estimated_usage(backend.question, events)
    assert error_of(events).kind is ErrorKind.UNAVAILABLE


@each_kind(lambda profile: profile.cut)
def test_it_reports_a_cut_connection_after_the_text_that_arrived(backend: Backend) -> None:
    cut = backend.profile.cut
    assert cut is not None
    whole = backend.profile.answer.text or text_of(backend.run())

    events = backend.play(cut.setup)

    text = text_of(events)
    assert text and whole.startswith(text) and text != whole, (text, whole)
    assert_failure(backend, events, cut, backend.question)


@each_case(lambda profile: profile.error_events)
def test_it_reports_an_error_sent_inside_the_stream_after_the_text_before_it(backend: Backend, case: Failure) -> None:
    assert_failure(backend, backend.play(case.setup), case, backend.question)


@each_kind(lambda profile: profile.malformed_chunk)
def test_it_reports_a_malformed_chunk_as_unavailable(backend: Backend) -> None:
    failure = backend.profile.malformed_chunk
    assert failure is not None

    assert_failure(backend, backend.play(failure.setup), failure, backend.question)


@each_kind(lambda profile: profile.wrong_shape)
def test_it_reports_a_chunk_of_the_wrong_shape_as_unavailable(backend: Backend) -> None:
    failure = backend.profile.wrong_shape
    assert failure is not None

    assert_failure(backend, backend.play(failure.setup), failure, backend.question)


@each_kind(lambda profile: profile.unfinished)
def test_it_reports_a_stream_that_ends_before_finishing_as_unavailable(backend: Backend) -> None:
    failure = backend.profile.unfinished
    assert failure is not None

    assert_failure(backend, backend.play(failure.setup), failure, backend.question)


@each_kind(lambda profile: profile.error_in_a_200_answer)
def test_it_reports_an_error_body_sent_with_status_200_as_that_error(backend: Backend) -> None:
    failure = backend.profile.error_in_a_200_answer
    assert failure is not None
    request = dataclasses.replace(backend.question, stream=False)

    events = backend.play(failure.setup, request)

    assert len(events) == 2, events
    assert_failure(backend, events, failure, request)


@each_kind(lambda profile: profile.paced_stream)
def test_closing_the_stream_early_closes_the_upstream_response(backend: Backend) -> None:
    assert backend.profile.paced_stream is not None
    backend.queue(backend.profile.paced_stream())
    adapter = backend.adapter()

    async def first_event_then_close() -> Event:
        stream = cast(AsyncGenerator[Event, None], adapter.stream(backend.question))
        event = await anext(stream)
        await stream.aclose()
        return event

    first = worker_loop.run(first_event_then_close())

    assert isinstance(first, TextDelta)
    assert backend.requests[0].client_left.wait(timeout=PAUSE_SECONDS / 2)


@each_kind(lambda profile: profile.paced_stream)
def test_cancelling_the_call_closes_the_upstream_response(backend: Backend) -> None:
    assert backend.profile.paced_stream is not None
    backend.queue(backend.profile.paced_stream())
    adapter = backend.adapter()

    async def cancel_after_the_first_event() -> tuple[list[Event], bool]:
        events: list[Event] = []
        arrived = asyncio.Event()

        async def consume() -> None:
            async for event in adapter.stream(backend.question):
                events.append(event)
                arrived.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(arrived.wait(), timeout=PAUSE_SECONDS / 2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return events, task.cancelled()

    events, cancelled = worker_loop.run(cancel_after_the_first_event())

    assert cancelled
    assert [type(event) for event in events] == [TextDelta]
    assert backend.requests[0].client_left.wait(timeout=PAUSE_SECONDS / 2)
