"""Caps by reservation: concurrent calls never overshoot a cap, and every reservation ends.

Driven through the OpenAI SDK against the in-process gateway, a real worker
and a fake upstream that holds its answers until the test releases them, so
that all the calls are in progress at once.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.caps.counters import cap_spent, counter_for
from billing.caps.reconcile import spend_reconcile
from billing.caps.reservations import LEASES_KEY, held_key, reserve_command
from billing.models import SpendCap, UsageRecord
from billing.money import to_units
from routing.models import LanguageModel, Provider, Route, RouteStep
from routing.services import model_price_set
from switchyard.redis_clients import get_redis
from tests.billing.test_caps_api import FOUR_O_CALL, FOUR_O_RESERVED, HELLO, MINI_CALL
from tests.fakes.openai import FakeOpenAI
from tests.usage_records import all_booked

pytestmark = pytest.mark.django_db(transaction=True)


def _held(kind: str, subject_id: int, period: str = "month") -> int:
    value = get_redis().get(held_key(counter_for(kind, subject_id, period, timezone.now())))
    return 0 if value is None else int(value)


def _counter(kind: str, subject_id: int, period: str = "month") -> int | None:
    value = get_redis().get(counter_for(kind, subject_id, period, timezone.now()).key)
    return None if value is None else int(value)


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what}")
        time.sleep(0.05)


def test_200_concurrent_calls_against_a_cap_that_fits_50_start_exactly_50(
    client: openai.OpenAI, upstream: FakeOpenAI, alice: Any
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=50 * FOUR_O_RESERVED)
    upstream.hold()
    refused: list[openai.RateLimitError] = []

    def call(_: int) -> str:
        try:
            client.with_options(timeout=90).chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
        except openai.RateLimitError as refusal:
            refused.append(refusal)
            return "refused"
        return "answered"

    with ThreadPoolExecutor(max_workers=200) as pool:
        outcomes = pool.map(call, range(200))
        # The answers are held at the provider: every refusal comes while the 50 admitted calls are in progress.
        wait_for(lambda: len(refused) == 150, "150 calls refused")
        assert _held("user", alice.pk) == 50 * to_units(FOUR_O_RESERVED)
        upstream.release()
        results = list(outcomes)

    assert results.count("answered") == 50
    assert len(upstream.requests) == 50
    for refusal in refused:
        assert refusal.code == "insufficient_quota"
        # Calls in progress free room when they end: the SDK may retry soon.
        assert refusal.response.headers["retry-after"] == "2"
        assert "x-should-retry" not in refusal.response.headers
    records = all_booked(50)
    spent = records.aggregate(total=Sum("cost_usd"))["total"]
    assert spent == 50 * FOUR_O_CALL <= 50 * FOUR_O_RESERVED
    wait_for(lambda: _held("user", alice.pk) == 0, "released")
    assert _counter("user", alice.pk) == to_units(spent)
    assert get_redis().zcard(LEASES_KEY) == 0


def _unpriced(registry: dict[str, Any]) -> LanguageModel:
    provider = Provider.objects.get(name="up")
    return LanguageModel.objects.create(
        public_id="up/mystery",
        provider=provider,
        upstream_name="mystery",
        context_window=8_000,
        max_output_tokens=1_000,
    )


def test_an_unpriced_model_is_refused_to_a_capped_caller_and_left_out_of_its_routes(
    client: openai.OpenAI, registry: dict[str, Any], alice: Any
) -> None:
    mystery = _unpriced(registry)
    route = Route.objects.create(name="mixed", description="unpriced first")
    RouteStep.objects.create(route=route, model=mystery, position=0)
    RouteStep.objects.create(route=route, model=registry["models"]["gpt"], position=1)
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="up/mystery", messages=HELLO)
    assert caught.value.code == "model_not_priced"
    assert caught.value.body["message"].startswith("up/mystery has no price, and a call by a user, team or API key")

    answer = client.chat.completions.create(model="mixed", messages=HELLO, max_tokens=10)
    assert answer.model == "up/gpt-4o-mini"
    record = all_booked(1).get()
    assert record.trace["skipped"] == [{"model": "up/mystery", "reason": "no price, and the caller has a spend cap"}]


def test_an_uncapped_caller_s_unpriced_call_is_booked_with_its_tokens_and_no_cost(
    client: openai.OpenAI, registry: dict[str, Any], alice: Any
) -> None:
    _unpriced(registry)
    client.chat.completions.create(model="up/mystery", messages=HELLO)
    record = all_booked(1).get()
    assert (record.input_tokens, record.output_tokens, record.cost_usd) == (19, 10, None)


def test_a_free_model_is_booked_at_nothing_and_open_to_capped_callers(
    client: openai.OpenAI, registry: dict[str, Any], alice: Any
) -> None:
    mystery = _unpriced(registry)
    mystery.free = True
    mystery.save()
    # A cap with nothing left: no room for any priced call.
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0"))
    client.chat.completions.create(model="up/mystery", messages=HELLO)
    record = all_booked(1).get()
    prices = (
        record.input_price_per_million,
        record.output_price_per_million,
        record.cached_input_price_per_million,
        record.cache_write_price_per_million,
    )
    assert (record.cost_usd, *prices) == (0, 0, 0, 0, 0)


def test_the_reconciliation_corrects_a_counter_that_missed_a_record_at_once_and_one_too_high_on_its_second_look(
    client: openai.OpenAI, alice: Any, bob: Any
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    SpendCap.objects.create(user=bob, limit_usd=Decimal("1"))
    client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    all_booked(1)
    truth = to_units(FOUR_O_CALL)
    alice_key = counter_for("user", alice.pk, "month", timezone.now()).key
    bob_key = counter_for("user", bob.pk, "month", timezone.now()).key
    # A record the counter missed (the gap of a rebuild), and a counter counting a call with no record.
    get_redis().set(alice_key, truth - 7)
    get_redis().set(bob_key, 5)

    first = spend_reconcile()
    assert (first.counters, first.corrected) == (2, 1)
    assert int(get_redis().get(alice_key)) == truth
    # Above the database may be a call counted a moment before its record is committed: wait for a second look.
    assert int(get_redis().get(bob_key)) == 5

    second = spend_reconcile()
    assert second.corrected == 1
    assert int(get_redis().get(bob_key)) == 0
    assert spend_reconcile().corrected == 0


def test_a_reservation_whose_lease_lapsed_is_released_by_the_reconciliation(alice: Any) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    counter = counter_for("user", alice.pk, "month", timezone.now())
    redis = get_redis()
    redis.set(counter.key, 0)
    assert redis.execute_command(*reserve_command([(counter, to_units(Decimal("1")))], [("lost-call", 1234)])) == [1]
    assert _held("user", alice.pk) == 1234

    # Its worker died: nobody renews the lease.
    redis.zadd(LEASES_KEY, {"lost-call": 0})
    assert spend_reconcile().reservations_lapsed == 1
    assert _held("user", alice.pk) == 0
    assert not redis.exists("sy:resv:lost-call")
    assert UsageRecord.objects.count() == 0


def test_redis_flushed_while_calls_hold_reservations_books_each_call_once_and_the_counters_from_the_records(
    client: openai.OpenAI, upstream: FakeOpenAI, alice: Any
) -> None:
    cap = SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    upstream.hold()
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = [
            pool.submit(client.with_options(timeout=60).chat.completions.create, model="up2/gpt-4o", messages=HELLO)
            for _ in range(5)
        ]
        wait_for(lambda: len(upstream.requests) == 5, "5 calls at the provider")
        get_redis().flushdb()
        upstream.release()
        for answer in answers:
            answer.result(timeout=60)

    records = all_booked(5)
    assert records.count() == 5
    spent = records.aggregate(total=Sum("cost_usd"))["total"]
    assert spent == 5 * FOUR_O_CALL
    spend_reconcile()
    # Whatever the flush left, what the cap reads now is what the records say: nothing lost, nothing invented.
    assert cap_spent(cap) == spent
    assert _held("user", alice.pk) == 0
    assert get_redis().zcard(LEASES_KEY) == 0


def _thrifty(registry: dict[str, Any], *, soft_landing: bool) -> Route:
    route = Route.objects.create(name="thrifty", description="strong first", soft_landing=soft_landing)
    RouteStep.objects.create(route=route, model=registry["models"]["gpt2"], position=0)
    RouteStep.objects.create(route=route, model=registry["models"]["gpt"], position=1)
    return route


def test_a_soft_landing_route_leaves_out_the_models_a_cap_cannot_carry_and_says_so(
    client: openai.OpenAI, upstream: FakeOpenAI, registry: dict[str, Any], alice: Any
) -> None:
    _thrifty(registry, soft_landing=True)
    # Room for up/gpt-4o-mini's worst case ($0.0000108), not for up2/gpt-4o's ($0.00018).
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0001"))

    raw = client.chat.completions.with_raw_response.create(model="thrifty", messages=HELLO, max_tokens=10)

    assert raw.parse().model == "up/gpt-4o-mini"
    assert raw.headers["x-switchyard-soft-landing"] == (
        "left out up2/gpt-4o: a spend cap has less left than it may cost"
    )
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"]
    record = all_booked(1).get()
    assert record.cost_usd == MINI_CALL
    assert record.trace["skipped"] == [
        {
            "model": "up2/gpt-4o",
            "reason": "soft landing: it may cost $0.00018, more than the $0.0001 left on User alice's monthly cap "
            "of $0.0001",
        }
    ]


def test_without_soft_landing_the_route_is_refused_and_when_no_model_fits_too(
    client: openai.OpenAI, upstream: FakeOpenAI, registry: dict[str, Any], alice: Any
) -> None:
    route = _thrifty(registry, soft_landing=False)
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0001"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="thrifty", messages=HELLO, max_tokens=10)

    route.soft_landing = True
    route.save()
    # Not even the cheapest model's worst case fits: refused, as without soft landing.
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="thrifty", messages=HELLO, max_tokens=200)
    assert caught.value.code == "insufficient_quota"
    assert upstream.requests == []
    assert UsageRecord.objects.count() == 0


def test_a_model_whose_cache_writes_cost_more_than_its_input_reserves_the_input_at_the_cache_write_price(
    client: openai.OpenAI, upstream: FakeOpenAI, registry: dict[str, Any], alice: Any
) -> None:
    """Any input token may be written to the cache (Anthropic bills that above the input price): the hold covers it."""
    model_price_set(
        model=registry["models"]["gpt2"],
        input_per_million=Decimal("2.50"),
        output_per_million=Decimal("10.00"),
        cache_write_per_million=Decimal("3.75"),
    )
    # Room for the call's worst case at the input price ($0.00018), not at the cache write price.
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0002"))

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)

    # 32 bytes of prompt at $3.75 per million and 10 output tokens at $10.
    assert "less than this call may cost ($0.00022, its input and every output token" in caught.value.body["message"]
    assert upstream.requests == []
