"""A call's record and its terminal event are written one after the other: a run that dies in between."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.utils import timezone

from billing.caps.check import cap_check
from billing.caps.counters import counter_for
from billing.models import SpendCap, UsageRecord
from billing.money import to_units
from routing.calls import worker_loop
from routing.calls.booking import figures_of
from routing.calls.events import Done, Failed, encode
from routing.calls.keys import run_key, stream_key
from routing.calls.recovery import call_run
from routing.calls.spec import CallSpec
from routing.providers.types import ChatRequest, Message
from switchyard.redis_clients import get_redis
from tests.call_specs import call_spec
from tests.call_streams import stream_entries, stream_events
from tests.fakes.openai import FakeOpenAI
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

FIGURES = (
    "status model provider attempts input_tokens output_tokens cached_input_tokens cache_write_tokens "
    "reasoning_tokens tokens_estimated cost_usd input_price_per_million output_price_per_million "
    "cached_input_price_per_million cache_write_price_per_million latency_ms ttft_ms error_kind finish_reason"
).split()


def test_a_run_that_died_between_its_answer_and_its_insert_is_booked_from_the_answer_once(
    client: openai.OpenAI, upstream: FakeOpenAI, alice: Any
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    upstream.queue(FakeOpenAI.cached_completion())
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Hello!"}]
    )
    record = booked(raw.headers["x-request-id"])
    assert (record.cached_input_tokens, record.reasoning_tokens) == (1920, 128)
    counter = counter_for("user", alice.pk, "month", timezone.now()).key
    spend = get_redis().get(counter)
    assert int(spend) == to_units(record.cost_usd) > 0
    # The state a worker killed after publishing the answer leaves: the answer
    # on the call's stream (whose reader is done with it, but not its worker),
    # the spend counted with it, no record, the run lease lapsed.
    _, kind, _, data = encode(Done(figures_of(record), record.finish_reason))
    get_redis().xadd(stream_key(record.request_id), {"t": kind, "d": data})
    UsageRecord.objects.filter(pk=record.pk).delete()
    get_redis().delete(run_key(record.request_id))
    redelivered = CallSpec(
        call_id=record.request_id,
        created_at=record.created_at,
        requested=record.requested,
        route=record.route,
        chain=tuple(record.trace["chain"]),
        request=ChatRequest(messages=(Message(role="user", content="Hello!"),)),
        user_id=alice.pk,
        api_key_id=record.api_key_id,
        publish_deltas=False,
    )

    worker_loop.run(call_run(redelivered, redelivered=True))

    again = UsageRecord.objects.get(request_id=record.request_id)
    assert {f: getattr(again, f) for f in FIGURES} == {f: getattr(record, f) for f in FIGURES}
    assert str(again.cost_usd) == raw.headers["x-switchyard-cost-usd"]
    assert get_redis().get(counter) == spend


@pytest.mark.parametrize("ended", ["ok", "error"])
def test_a_playground_run_that_died_between_its_insert_and_its_terminal_event_is_announced_once(
    registry: dict[str, Any], alice: Any, ended: str
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    worker_loop.run(cap_check(user_id=alice.pk, team_id=None, api_key_id=None))
    counter = counter_for("user", alice.pk, "month", timezone.now()).key
    spec = call_spec(
        "sim/swift", call_id=f"playground-{uuid.uuid4().hex}", user_id=alice.pk, source=UsageRecord.Source.PLAYGROUND
    )
    worker_loop.run(call_run(spec))
    record = booked(spec.call_id)
    units = to_units(record.cost_usd)
    assert units > 0 and int(get_redis().get(counter)) == units
    stream = stream_entries(spec.call_id)
    answered = [event for _, event in stream]
    assert isinstance(answered[-1], Done)
    # The state a worker killed between the insert and the announcement
    # leaves (a playground call books first): the record, the answer on the
    # stream without its terminal event, the spend not counted, the run
    # lease lapsed.
    get_redis().xdel(stream_key(spec.call_id), stream[-1][0])
    get_redis().decrby(counter, units)
    get_redis().delete(run_key(spec.call_id))
    if ended == "error":
        # As a model that failed after its first tokens leaves its record.
        attempts = [{"model": "sim/swift", "outcome": "unavailable", "message": "the stream broke"}]
        UsageRecord.objects.filter(pk=record.pk).update(status="error", error_kind="unavailable", attempts=attempts)

    for _ in range(2):
        worker_loop.run(call_run(spec, redelivered=True))
        get_redis().delete(run_key(spec.call_id))

        again = stream_events(spec.call_id)
        assert again[:-1] == answered[:-1], "the answer is not sent again"
        terminal = again[-1]
        assert isinstance(terminal, Done | Failed)
        assert terminal.figures.cost == str(record.cost_usd)
        if ended == "ok":
            assert isinstance(terminal, Done)
        else:
            assert isinstance(terminal, Failed)
            assert (terminal.error_kind, terminal.message) == ("unavailable", "the stream broke")
        assert int(get_redis().get(counter)) == units, "the spend is counted once"
        assert UsageRecord.objects.filter(request_id=spec.call_id).count() == 1


def test_a_call_booked_long_before_its_message_comes_again_is_not_sent_upstream_again(
    registry: dict[str, Any], alice: Any, upstream: FakeOpenAI
) -> None:
    """The redelivery of a shared message can come after the stream of a call it holds is gone: the record tells."""
    spec = call_spec("up/gpt-4o-mini", user_id=alice.pk)
    worker_loop.run(call_run(spec))
    record = booked(spec.call_id)
    assert len(upstream.requests) == 1
    # Long after: the call's stream and its lease have expired; its message is delivered again.
    get_redis().delete(stream_key(spec.call_id), run_key(spec.call_id))

    worker_loop.run(call_run(spec, redelivered=True))

    assert len(upstream.requests) == 1, "the call was sent upstream again"
    assert list(UsageRecord.objects.filter(request_id=spec.call_id)) == [record]


@pytest.mark.parametrize("stream", [False, True])
def test_an_answered_and_booked_api_call_leaves_nothing_of_its_stream_in_redis(
    client: openai.OpenAI, stream: bool
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="up/gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}], stream=stream
    )
    if stream:
        list(raw.parse())
    call_id = raw.headers["x-request-id"]
    booked(call_id)
    deadline = time.monotonic() + 5
    while get_redis().keys(f"sy:call:{call_id}*"):
        assert time.monotonic() < deadline, get_redis().keys(f"sy:call:{call_id}*")
        time.sleep(0.05)
