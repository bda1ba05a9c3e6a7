"""Spend caps enforced on /v1, driven through the OpenAI SDK against a real worker and fake upstream."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.caps.counters import counter_for
from billing.models import ApiKey, SpendCap, Team, UsageRecord
from billing.money import to_units
from billing.periods import period_bounds
from switchyard.redis_clients import get_redis
from tests.fakes.openai import FakeOpenAI
from tests.usage_records import all_booked

pytestmark = pytest.mark.django_db(transaction=True)

# Long enough that its bytes bound the fake's recorded 19 input tokens, as a real prompt's bound its tokens.
HELLO = [{"role": "user", "content": "Hello! How are you today?"}]
# What one such call costs on each model (19 tokens in, 10 out, per the fake's recorded answer).
MINI_CALL = Decimal("0.0000088500")  # up/gpt-4o-mini at $0.15 / $0.60 per million
FOUR_O_CALL = Decimal("0.0001475000")  # up2/gpt-4o at $2.50 / $10.00 per million
# What such a call reserves with max_tokens=10: its 32 bytes of prompt (with
# the message's framing) as input tokens, and 10 output tokens.
MINI_RESERVED = Decimal("0.0000108")
FOUR_O_RESERVED = Decimal("0.00018")


def next_month_start() -> dt.datetime:
    return period_bounds(SpendCap.Period.MONTH, timezone.now())[1]


def spent_in_db(**subject: Any) -> Decimal:
    return UsageRecord.objects.filter(**subject).aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)


def counter_value(kind: str, subject_id: int, period: str) -> int | None:
    value = get_redis().get(counter_for(kind, subject_id, period, timezone.now()).key)
    return None if value is None else int(value)


def test_a_user_cap_refuses_the_call_after_spend_reaches_it_and_books_nothing(
    client: openai.OpenAI, upstream: FakeOpenAI, alice: Any
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0001"))
    answered = 0
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(20):
            client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, max_tokens=10)
            answered += 1

    # 11 calls leave $0.00009735 spent: less than the 12th call's reservation is left.
    assert answered == 11
    assert all_booked(11).count() == 11
    assert spent_in_db(user=alice) == 11 * MINI_CALL == Decimal("0.0000973500")
    error = caught.value
    assert error.status_code == 429
    assert error.code == "insufficient_quota"
    assert error.body["type"] == "insufficient_quota"
    assert error.body["param"] is None
    resets = next_month_start()
    assert error.body["message"] == (
        "User alice's monthly cap of $0.0001 has $0.00000265 left: less than this call may cost ($0.0000108, its "
        "input and every output token it may use at today's prices). A lower max_tokens reserves less; the cap "
        f"resets on {resets:%Y-%m-%d} 00:00 UTC."
    )
    retry_after = int(error.response.headers["retry-after"])
    # OpenAI's SDKs honour it: no pointless retries of a cap that lasts until the period ends.
    assert error.response.headers["x-should-retry"] == "false"
    assert 0 <= retry_after - (resets - timezone.now()).total_seconds() < 5
    assert len(upstream.requests) == 11


def test_a_team_cap_refuses_every_member_s_team_key_but_not_their_own_keys(
    acme_clients: dict[str, openai.OpenAI], client: openai.OpenAI, acme: Team, upstream: FakeOpenAI
) -> None:
    SpendCap.objects.create(team=acme, limit_usd=Decimal("0.0004"))
    acme_clients["alice"].chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    acme_clients["bob"].chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)

    for member in ("alice", "bob"):
        with pytest.raises(openai.RateLimitError) as caught:
            acme_clients[member].chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
        assert caught.value.code == "insufficient_quota"
        message = caught.value.body["message"]
        assert message.startswith("Team Acme's monthly cap of $0.0004 has $0.000105 left: less than this call")
    assert all_booked(2).count() == 2
    assert spent_in_db(team=acme) == 2 * FOUR_O_CALL

    # alice's own key books to no team: the team's cap is not hers.
    answer = client.chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, max_tokens=10)
    assert answer.choices[0].message.content


def test_a_daily_cap_on_one_api_key_leaves_the_user_s_other_keys_alone(
    gateway_url: str, client: openai.OpenAI, alice_key: ApiKey, acme_clients: dict[str, openai.OpenAI]
) -> None:
    SpendCap.objects.create(api_key=alice_key, limit_usd=Decimal("0.0002"), period=SpendCap.Period.DAY)
    client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    tomorrow = period_bounds(SpendCap.Period.DAY, timezone.now())[1]
    assert caught.value.body["message"] == (
        f'API key "test" ({alice_key.prefix}...)\'s daily cap of $0.0002 has $0.0000525 left: less than this call '
        "may cost ($0.00018, its input and every output token it may use at today's prices). A lower max_tokens "
        f"reserves less; the cap resets on {tomorrow:%Y-%m-%d} 00:00 UTC."
    )
    assert acme_clients["alice"].chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10).id


def test_the_counters_equal_the_sum_of_the_records_exactly(
    acme_clients: dict[str, openai.OpenAI], acme: Team, alice: Any, bob: Any, upstream: FakeOpenAI
) -> None:
    for subject in ({"team": acme}, {"user": alice}, {"user": bob}):
        SpendCap.objects.create(limit_usd=Decimal("10"), period=SpendCap.Period.DAY, **subject)
    SpendCap.objects.create(team=acme, limit_usd=Decimal("100"))
    for member, model in [("alice", "up/gpt-4o-mini"), ("bob", "up2/gpt-4o"), ("alice", "up2/gpt-4o")]:
        acme_clients[member].chat.completions.create(model=model, messages=HELLO)
    stream = acme_clients["bob"].chat.completions.create(model="up/gpt-4o-mini", messages=HELLO, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    # Each call was counted before its answer ended, and booked a moment after.
    all_booked(4)
    team_spend = spent_in_db(team=acme)
    assert team_spend == MINI_CALL + 2 * FOUR_O_CALL + spent_in_db(request_id__in=_streamed(bob))
    assert counter_value("team", acme.pk, "day") == counter_value("team", acme.pk, "month") == to_units(team_spend)
    assert counter_value("user", alice.pk, "day") == to_units(spent_in_db(user=alice))
    assert counter_value("user", bob.pk, "day") == to_units(spent_in_db(user=bob))
    assert counter_value("user", bob.pk, "month") is None  # no monthly cap on bob: never read, never kept


def _streamed(user: Any) -> list[str]:
    return list(UsageRecord.objects.filter(user=user, model="up/gpt-4o-mini").values_list("request_id", flat=True))


def test_a_flushed_counter_is_rebuilt_from_the_database_before_deciding(client: openai.OpenAI, alice: Any) -> None:
    # Four places, as the field keeps: PostgreSQL would round a fifth half up, SQLite half to even.
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0004"))
    client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    all_booked(1)
    key = counter_for("user", alice.pk, "month", timezone.now()).key
    get_redis().delete(key)

    # Rebuilt at $0.0001475: room for the $0.00018 reserved, so this call runs and lands on the rebuilt counter.
    client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    assert int(get_redis().get(key)) == to_units(2 * FOUR_O_CALL)

    all_booked(2)
    get_redis().delete(key)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    assert int(get_redis().get(key)) == to_units(spent_in_db(user=alice))
    assert UsageRecord.objects.count() == 2


def test_answers_past_the_soft_threshold_carry_a_warning_header(client: openai.OpenAI, alice: Any) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0004"), soft_threshold=Decimal("0.3"))
    first = client.chat.completions.with_raw_response.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    assert "x-switchyard-cap-warning" not in first.headers

    # The header reports the spend before the call: $0.0001475 of $0.0004.
    second = client.chat.completions.with_raw_response.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    resets = next_month_start()
    assert second.headers["x-switchyard-cap-warning"] == (
        f"User alice's monthly cap is 36% used ($0.000147 of $0.0004), resetting {resets:%Y-%m-%d} 00:00 UTC."
    )

    with client.chat.completions.with_streaming_response.create(
        model="up/gpt-4o-mini", messages=HELLO, max_tokens=10, stream=True
    ) as streamed:
        warning = streamed.headers["x-switchyard-cap-warning"]
        assert warning.startswith("User alice's monthly cap is 73% used ($0.000295")
        assert "[DONE]" in "".join(streamed.iter_lines())


def test_a_cap_takes_effect_on_the_next_call_and_lifts_when_deleted_or_disabled(
    client: openai.OpenAI, alice: Any
) -> None:
    client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
    cap = SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0001"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)

    cap.enabled = False
    cap.save()
    client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)

    cap.enabled = True
    cap.save()
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)

    cap.delete()
    assert client.chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10).id
    assert all_booked(3).count() == 3
