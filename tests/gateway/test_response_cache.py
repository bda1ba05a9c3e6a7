"""The response cache through /v1 with the OpenAI SDK: a real worker, a real Redis, the fake OpenAI upstream."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from billing.caps.counters import counter_for
from billing.caps.reservations import HELD_PREFIX, RESERVATION_PREFIX
from billing.models import ApiKey, RateLimit, SpendCap, Team, UsageRecord, UsageRollup
from billing.money import to_units
from billing.ratelimits.config import rate_limits_publish
from billing.rollups.build import rollups_check
from billing.services import api_key_create
from routing.gateway.openai_request import parse_chat_body
from routing.models import Route
from routing.resilience.cache import (
    READY_PREFIX,
    CachedAnswer,
    CacheFlight,
    CacheUse,
    cache_key,
    cache_scope,
    claim_key,
)
from switchyard.redis_clients import get_redis
from tests.fakes.openai import FakeOpenAI
from tests.usage_records import all_booked, booked

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture
def cached_route(registry: dict[str, Any]) -> Route:
    route: Route = registry["routes"]["auto"]
    route.cache_enabled = True
    route.cache_ttl_seconds = 600
    route.save()
    return route


def _ask(client: openai.OpenAI, *, stream: bool, **options: Any) -> tuple[dict[str, str], str, Any]:
    """One call: its headers, its answer's text, its usage."""
    options = {"model": "auto", "messages": HELLO} | options
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            stream=True, stream_options={"include_usage": True}, **options
        )
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return dict(raw.headers), text, chunks[-1].usage
    raw = client.chat.completions.with_raw_response.create(**options)
    completion = raw.parse()
    return dict(raw.headers), completion.choices[0].message.content or "", completion.usage


def _scripts_run() -> int:
    return int(get_redis().info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


def _upstream_calls(upstream: FakeOpenAI) -> int:
    return sum(1 for request in upstream.requests if request.path == "/v1/chat/completions")


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_a_hit_is_the_miss_it_replays_booked_at_no_cost_with_its_saving(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route, stream: bool
) -> None:
    missed, miss_text, miss_usage = _ask(client, stream=stream)
    hit, hit_text, hit_usage = _ask(client, stream=stream)

    assert (missed["x-switchyard-cache"], hit["x-switchyard-cache"]) == ("miss", "hit")
    assert _upstream_calls(upstream) == 1
    assert not list(get_redis().scan_iter(match=f"{READY_PREFIX}*")), "nobody waited: no ready stream"
    assert hit_text == miss_text and hit_text
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert getattr(hit_usage, name) == getattr(miss_usage, name)
    assert hit["x-switchyard-model"] == missed["x-switchyard-model"] == "up/gpt-4o-mini"
    first, again = booked(missed["x-request-id"]), booked(hit["x-request-id"])
    time.sleep(0.3)
    assert UsageRecord.objects.filter(request_id=hit["x-request-id"]).count() == 1, "booked once"
    assert (first.cache_hit, first.cache_saving_usd) == (False, None)
    assert first.cost_usd > 0
    assert (again.cache_hit, again.cost_usd, again.cache_saving_usd) == (True, Decimal(0), first.cost_usd)
    assert (again.input_tokens, again.output_tokens) == (first.input_tokens, first.output_tokens)
    assert [(a["model"], a["outcome"]) for a in again.attempts] == [("up/gpt-4o-mini", "cache_hit")]
    assert not again.fell_back
    assert again.ttft_ms is None, "no model's time to first token"
    rollup = UsageRollup.objects.get(model="up/gpt-4o-mini")
    assert (rollup.requests, rollup.cache_hits, rollup.cache_saving_units) == (2, 1, to_units(first.cost_usd))
    now = timezone.now()
    assert list(rollups_check(now - dt.timedelta(hours=2), now + dt.timedelta(hours=1))) == []


def test_a_streamed_request_is_answered_from_a_bodys_entry_and_the_other_way_round(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route
) -> None:
    _, body_text, _ = _ask(client, stream=False)
    streamed, stream_text, _ = _ask(client, stream=True)
    assert streamed["x-switchyard-cache"] == "hit"
    assert stream_text == body_text
    assert _upstream_calls(upstream) == 1


def test_a_changed_parameter_or_message_misses(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route
) -> None:
    asked = [
        _ask(client, stream=False, temperature=0),
        _ask(client, stream=False, temperature=0.0),
        _ask(client, stream=False, temperature=0.2),
        _ask(client, stream=False, temperature=0, max_tokens=50),
        _ask(client, stream=False, temperature=0, messages=[{"role": "user", "content": "Hello?"}]),
        _ask(client, stream=False, temperature=0, model="up/gpt-4o-mini", extra_body={"metadata": {"cache": True}}),
    ]
    # 0 and 0.0 are one temperature; each other change is a request of its own.
    assert [headers["x-switchyard-cache"] for headers, _, _ in asked] == ["miss", "hit", "miss", "miss", "miss", "miss"]
    assert _upstream_calls(upstream) == 5


def test_two_identical_requests_at_once_make_one_upstream_call(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route
) -> None:
    upstream.queue(FakeOpenAI.completion(first_byte_delay=1.0), FakeOpenAI.completion(first_byte_delay=1.0))
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _ask(client, stream=False), range(2)))
    assert sorted(headers["x-switchyard-cache"] for headers, _, _ in answers) == ["hit", "miss"]
    assert answers[0][1] == answers[1][1]
    assert _upstream_calls(upstream) == 1
    records = [booked(headers["x-request-id"]) for headers, _, _ in answers]
    assert sorted(record.cache_hit for record in records) == [False, True]


def test_a_waiting_request_runs_itself_when_the_first_fails(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    upstream.queue(FakeOpenAI.error(500, "openai-error-500.json", first_byte_delay=1.0), FakeOpenAI.completion())
    single = {"model": "up/gpt-4o-mini", "metadata": {"cache": "true"}}
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(_ask, client, stream=False, **single) for _ in range(2)]
        failures = [future.exception(timeout=30) for future in pending]
    assert sum(isinstance(failure, openai.InternalServerError) for failure in failures) == 1
    [answered] = [future.result() for future, failure in zip(pending, failures, strict=True) if failure is None]
    assert answered[0]["x-switchyard-cache"] == "miss"
    assert _upstream_calls(upstream) == 2


def test_a_request_waiting_on_a_dead_workers_claim_runs_itself_once_the_lease_lapses(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route, alice: Any
) -> None:
    request = parse_chat_body(json.dumps({"model": "auto", "messages": HELLO}).encode()).request
    key = cache_key(scope=cache_scope(team_id=None, user_id=alice.pk), target="auto", request=request)
    # What a worker that died while answering the first of two identical calls leaves behind.
    get_redis().set(claim_key(key), "chatcmpl-of-a-dead-worker", px=1500)
    waited = _ask(client, stream=False)[0]
    assert waited["x-switchyard-cache"] == "miss"
    assert _upstream_calls(upstream) == 1
    assert get_redis().exists(key)
    assert _ask(client, stream=False)[0]["x-switchyard-cache"] == "hit"


def test_a_request_waiting_on_a_claim_is_answered_as_soon_as_its_holder_stores_the_answer(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route, alice: Any
) -> None:
    request = parse_chat_body(json.dumps({"model": "auto", "messages": HELLO}).encode()).request
    key = cache_key(scope=cache_scope(team_id=None, user_id=alice.pk), target="auto", request=request)
    holder = "chatcmpl-of-a-slow-first-call"
    # An identical call in flight, whose lease would keep a waiter for 20 s.
    get_redis().set(claim_key(key), holder, px=20_000)
    answer = CachedAnswer("up/gpt-4o-mini", "up", "Stored by the first call.", "stop", input_tokens=9, output_tokens=5)
    # A call of its own first, so that the worker is ready to take the waiting one at once.
    _ask(client, stream=False, extra_headers={"cache-control": "no-cache"})
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_ask, client, stream=False)
        time.sleep(0.5)
        evals = _scripts_run()
        time.sleep(1)
        assert not waiting.done()
        assert _scripts_run() - evals <= 1, "the waiter blocks; it does not ask again and again"
        asyncio.run(CacheFlight(CacheUse(key, 600), holder).store(answer))
        stored_at = time.monotonic()
        headers, text, _ = waiting.result(timeout=10)
    assert time.monotonic() - stored_at < 1, "woken by the store, not by the lease's end"
    assert (headers["x-switchyard-cache"], text) == ("hit", "Stored by the first call.")
    assert not get_redis().exists(claim_key(key))
    assert _upstream_calls(upstream) == 1


def test_another_team_misses_where_a_teammate_hits(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route, gateway_url: str, alice: Any
) -> None:
    acme, globex = Team.objects.create(name="Acme", slug="acme"), Team.objects.create(name="Globex", slug="globex")
    users = get_user_model().objects
    keys = {
        "alice": api_key_create(user=alice, team=acme)[1],
        "bob": api_key_create(user=users.create_user("bob"), team=acme)[1],
        "charlie": api_key_create(user=users.create_user("charlie"), team=globex)[1],
        "dora": api_key_create(user=users.create_user("dora"))[1],
    }
    said = {}
    for name in ("alice", "bob", "charlie", "dora"):
        caller = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=keys[name], max_retries=0, timeout=20)
        said[name] = _ask(caller, stream=False)[0]["x-switchyard-cache"]
    # Alice's own key, with no team: a teamless caller's answers are its own.
    said["alice alone"] = _ask(client, stream=False)[0]["x-switchyard-cache"]
    assert said == {"alice": "miss", "bob": "hit", "charlie": "miss", "dora": "miss", "alice alone": "miss"}
    assert _upstream_calls(upstream) == 4


def test_a_request_asks_for_the_cache_on_a_route_without_it_or_refuses_it_on_one_with_it(
    client: openai.OpenAI, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    plain = _ask(client, stream=False)[0]
    assert "x-switchyard-cache" not in plain, "a route without the cache does not consult it"
    asked = [_ask(client, stream=False, extra_body={"metadata": {"cache": True}})[0] for _ in range(2)]
    assert [headers["x-switchyard-cache"] for headers in asked] == ["miss", "hit"]
    by_id = [_ask(client, stream=True, model="up/gpt-4o-mini", metadata={"cache": "true"})[0] for _ in range(2)]
    assert [headers["x-switchyard-cache"] for headers in by_id] == ["miss", "hit"]
    assert _upstream_calls(upstream) == 3

    route: Route = registry["routes"]["auto"]
    route.cache_enabled = True
    route.save()
    refused = [
        _ask(client, stream=False, extra_body={"metadata": {"cache": False}})[0],
        _ask(client, stream=False, extra_headers={"cache-control": "no-cache"})[0],
    ]
    assert all("x-switchyard-cache" not in headers for headers in refused)
    assert _upstream_calls(upstream) == 5


def test_a_temperature_above_the_routes_ceiling_skips_the_cache_unless_asked(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route
) -> None:
    cached_route.cache_max_temperature = 0.5
    cached_route.save()
    hot = [_ask(client, stream=False, temperature=0.9)[0] for _ in range(2)]
    assert all("x-switchyard-cache" not in headers for headers in hot)
    asked = [_ask(client, stream=False, temperature=0.9, metadata={"cache": "true"})[0] for _ in range(2)]
    assert [headers["x-switchyard-cache"] for headers in asked] == ["miss", "hit"]
    assert _upstream_calls(upstream) == 3


def test_a_bad_cache_switch_is_a_400(client: openai.OpenAI, registry: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(client, stream=False, metadata={"cache": "maybe"})
    assert refused.value.body["param"] == "metadata.cache"  # type: ignore[index]


def test_errors_and_cut_streams_are_not_stored(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route
) -> None:
    single = {"model": "up/gpt-4o-mini", "metadata": {"cache": "true"}}
    upstream.queue(
        FakeOpenAI.error(400, "openai-error-400-context-length.json"),
        FakeOpenAI.stream("openai-chat-stream-error-midstream.sse"),
    )
    with pytest.raises(openai.BadRequestError):
        _ask(client, stream=False, **single)
    with pytest.raises(openai.APIError):
        _ask(client, stream=True, **single)
    answers = [_ask(client, stream=False, **single)[0]["x-switchyard-cache"] for _ in range(2)]
    assert answers == ["miss", "hit"]
    assert _upstream_calls(upstream) == 3


def test_a_flushed_redis_simply_misses(client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route) -> None:
    first = _ask(client, stream=False)[0]
    booked(first["x-request-id"])
    get_redis().flushdb()
    again = _ask(client, stream=False)[0]
    assert (first["x-switchyard-cache"], again["x-switchyard-cache"]) == ("miss", "miss")
    assert _upstream_calls(upstream) == 2
    booked(again["x-request-id"])


def test_a_capped_callers_hit_counts_nothing_against_its_cap(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route, alice: Any
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    first = _ask(client, stream=False)[0]
    hit = _ask(client, stream=False)[0]
    assert hit["x-switchyard-cache"] == "hit"
    assert hit["x-switchyard-cost-usd"] == "0"
    assert booked(hit["x-request-id"]).cost_usd == 0
    counter = counter_for("user", alice.pk, "month", timezone.now()).key
    assert int(get_redis().get(counter)) == to_units(booked(first["x-request-id"]).cost_usd)
    assert not get_redis().exists(f"{RESERVATION_PREFIX}{hit['x-request-id']}"), "the hit's reservation is released"
    assert not list(get_redis().scan_iter(match=f"{HELD_PREFIX}*")), "nothing is held for a call in progress"


def test_a_hit_is_refused_by_a_spend_cap_without_room_as_a_miss_is(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route, alice: Any
) -> None:
    cap = SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    assert _ask(client, stream=False)[0]["x-switchyard-cache"] == "miss"
    # Less left than the call's worst case: a hit is admitted as any call is, and refused.
    cap.limit_usd = Decimal("0.000001")
    cap.save()
    with pytest.raises(openai.RateLimitError) as refused:
        _ask(client, stream=False)
    assert refused.value.code == "insufficient_quota"
    assert UsageRecord.objects.filter(cache_hit=True).count() == 0


def test_a_hit_counts_against_the_rate_limits_and_carries_their_headers(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route, alice: Any
) -> None:
    RateLimit.objects.create(api_key=ApiKey.objects.get(user=alice), requests_per_minute=2)
    try:
        missed, hit = _ask(client, stream=False)[0], _ask(client, stream=True)[0]
        assert (missed["x-switchyard-cache"], hit["x-switchyard-cache"]) == ("miss", "hit")
        assert (missed["x-ratelimit-remaining-requests"], hit["x-ratelimit-remaining-requests"]) == ("1", "0")
        assert hit["x-ratelimit-limit-requests"] == "2"
        with pytest.raises(openai.RateLimitError) as refused:
            _ask(client, stream=False)
        assert refused.value.code == "rate_limit_exceeded"
        records = all_booked(2)
        assert sorted(record.cache_hit for record in records) == [False, True]
    finally:
        RateLimit.objects.all().delete()
        rate_limits_publish()


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def test_a_tool_call_is_replayed_to_a_body_and_to_a_stream(
    client: openai.OpenAI, upstream: FakeOpenAI, cached_route: Route
) -> None:
    upstream.queue(FakeOpenAI.completion("openai-chat-response-tool-calls.json"))
    ask = {"model": "auto", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER]}
    first = client.chat.completions.create(**ask)
    again = client.chat.completions.with_raw_response.create(**ask)
    assert again.headers["x-switchyard-cache"] == "hit"
    [called] = first.choices[0].message.tool_calls or []
    [replayed] = again.parse().choices[0].message.tool_calls or []
    assert (replayed.id, replayed.function.name, replayed.function.arguments) == (
        called.id,
        called.function.name,
        called.function.arguments,
    )
    assert again.parse().choices[0].finish_reason == first.choices[0].finish_reason == "tool_calls"
    with client.chat.completions.stream(**ask) as stream:
        final = stream.get_final_completion()
    [streamed] = final.choices[0].message.tool_calls or []
    assert (streamed.id, streamed.function.name, streamed.function.arguments) == (
        called.id,
        called.function.name,
        called.function.arguments,
    )
    assert _upstream_calls(upstream) == 1
