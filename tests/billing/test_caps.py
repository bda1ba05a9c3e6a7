"""Spend counters, periods and cap checks, against the real database and Redis (no gateway)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError
from django.utils import timezone

from billing.caps import rules
from billing.caps.check import CapCheck, cap_check
from billing.caps.counters import counter_for
from billing.models import SpendCap, Team, UsageRecord
from billing.money import format_usd, from_units, to_units
from billing.periods import period_bounds
from billing.services import (
    UsageBooking,
    spend_count,
    spend_recount,
    usage_record_insert,
    usage_record_new,
    usage_records_insert,
)
from routing.calls.spec import CallSpec
from routing.catalog import get_catalog
from routing.gateway.http import header_value
from switchyard.redis_clients import get_redis
from tests.call_specs import call_spec

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC


def record(when: dt.datetime, cost: str | None, **subject: Any) -> UsageRecord:
    return UsageRecord.objects.create(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        created_at=when,
        requested="up/gpt-4o-mini",
        model="up/gpt-4o-mini",
        status=UsageRecord.Status.OK,
        cost_usd=None if cost is None else Decimal(cost),
        **subject,
    )


def checked(user_id: int | None, team_id: int | None = None, now: dt.datetime | None = None) -> CapCheck:
    """The hot path's check, run from this thread: its database reads are on this thread's connection."""
    return async_to_sync(cap_check)(user_id=user_id, team_id=team_id, api_key_id=None, now=now)


def counter(kind: str, subject_id: int, period: str, when: dt.datetime) -> int | None:
    value = get_redis().get(counter_for(kind, subject_id, period, when).key)
    return None if value is None else int(value)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


PARIS_SUMMER = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("period", "when", "start", "end"),
    [
        ("day", utc(2026, 3, 15, 12, 30), utc(2026, 3, 15), utc(2026, 3, 16)),
        ("month", utc(2026, 3, 15, 12, 30), utc(2026, 3, 1), utc(2026, 4, 1)),
        ("month", utc(2026, 12, 31, 23, 59), utc(2026, 12, 1), utc(2027, 1, 1)),
        # 01:30 in Paris on the 1st is still the last day of the previous month in UTC.
        ("month", dt.datetime(2026, 4, 1, 1, 30, tzinfo=PARIS_SUMMER), utc(2026, 3, 1), utc(2026, 4, 1)),
    ],
)
def test_periods_are_utc_calendar_days_and_months(
    period: str, when: dt.datetime, start: dt.datetime, end: dt.datetime
) -> None:
    assert period_bounds(period, when) == (start, end)


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("50", "$50.00"),
        ("50.1299", "$50.12"),
        ("1234.5", "$1,234.50"),
        ("0.25", "$0.25"),
        ("0.0001", "$0.0001"),
        ("0.0001475", "$0.000147"),
        ("0.0000000001", "$0.0000000001"),
        ("0", "$0.00"),
    ],
)
def test_amounts_are_shown_in_dollars_rounded_down(amount: str, shown: str) -> None:
    assert format_usd(Decimal(amount), rounded=True) == shown


def test_units_are_exact_for_every_cost_a_record_can_hold() -> None:
    cost = Decimal("12345678.9012345678")
    assert to_units(cost) == 123456789012345678
    assert from_units(to_units(cost)) == cost


def test_a_record_of_last_month_or_yesterday_does_not_count_in_this_period(alice: Any) -> None:
    now = dt.datetime(2030, 3, 15, 12, tzinfo=UTC)
    tick = dt.timedelta(microseconds=1)
    record(dt.datetime(2030, 3, 1, tzinfo=UTC) - tick, "5", user=alice)  # last month
    record(dt.datetime(2030, 3, 1, tzinfo=UTC), "0.0000000003", user=alice)  # this month, not today
    record(dt.datetime(2030, 3, 15, tzinfo=UTC) - tick, "0.25", user=alice)  # yesterday
    record(dt.datetime(2030, 3, 15, tzinfo=UTC), "0.0000088500", user=alice)  # today
    record(dt.datetime(2030, 3, 15, 11, tzinfo=UTC), None, user=alice)  # unpriced: no cost to count
    record(dt.datetime(2030, 4, 1, tzinfo=UTC), "7", user=alice)  # next month
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.2500"), period=SpendCap.Period.MONTH)
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0001"), period=SpendCap.Period.DAY)

    check = checked(alice.pk, now=now)

    assert check.block is not None
    assert check.block.cap.period == "month"
    assert check.block.spent == Decimal("0.2500088503")
    assert check.block.resets_at == dt.datetime(2030, 4, 1, tzinfo=UTC)
    assert counter("user", alice.pk, "month", now) == 2500088503
    assert counter("user", alice.pk, "day", now) == 88500


def test_the_cap_that_frees_up_last_is_the_one_reported(alice: Any) -> None:
    now = dt.datetime(2030, 3, 15, 12, tzinfo=UTC)
    record(now, "1", user=alice)
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"), period=SpendCap.Period.DAY)
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"), period=SpendCap.Period.MONTH)

    block = checked(alice.pk, now=now).block

    assert block is not None and block.cap.period == "month"
    assert block.message == (
        "User alice's monthly cap of $1.00 is used up ($1.00 spent); it resets on 2030-04-01 00:00 UTC."
    )
    assert block.retry_after_seconds(now) == 16 * 86400 + 12 * 3600


def test_a_rebuilt_counter_is_the_exact_sum_of_many_records(alice: Any) -> None:
    now = timezone.now()
    costs = [Decimal("0.0000088500"), Decimal("0.0000000001"), Decimal("0.1234567891"), Decimal("3.3333333333")]
    UsageRecord.objects.bulk_create(
        UsageRecord(request_id=f"r{i}", created_at=now, requested="m", status="ok", cost_usd=costs[i % 4], user=alice)
        for i in range(1000)
    )
    SpendCap.objects.create(user=alice, limit_usd=Decimal("100000"))

    checked(alice.pk)

    exact = sum(UsageRecord.objects.values_list("cost_usd", flat=True), Decimal(0))
    assert exact == 250 * sum(costs)
    assert counter("user", alice.pk, "month", now) == to_units(exact)


def _booking(spec: CallSpec) -> UsageBooking:
    return UsageBooking(
        spec=spec,
        model=get_catalog().models["up/gpt-4o-mini"],
        status="ok",
        attempts=[],
        input_tokens=19,
        output_tokens=10,
        tokens_estimated=False,
        latency_ms=5,
        ttft_ms=3,
        error_kind="",
        finish_reason="stop",
    )


def test_a_call_is_inserted_once_and_counts_only_on_counters_that_exist(registry: dict[str, Any], alice: Any) -> None:
    team = Team.objects.create(name="Acme", slug="acme")
    SpendCap.objects.create(team=team, limit_usd=Decimal("1"))
    checked(alice.pk, team.pk)
    now = timezone.now()
    assert counter("team", team.pk, "month", now) == 0
    spec = call_spec(
        "up/gpt-4o-mini", prompt="Hi", call_id="chatcmpl-once", created_at=now, user_id=alice.pk, team_id=team.pk
    )

    first = usage_record_new(_booking(spec))
    again = usage_record_new(_booking(spec))

    assert usage_record_insert(first) is True
    assert usage_record_insert(again) is False
    async_to_sync(spend_count)([first])

    assert UsageRecord.objects.get(request_id="chatcmpl-once").cost_usd == Decimal("0.0000088500")
    assert counter("team", team.pk, "month", now) == 88500
    # Never read, so never started: a counter begun at zero would hide earlier spend.
    assert counter("team", team.pk, "day", now) is None
    assert counter("user", alice.pk, "month", now) is None


def test_a_record_that_may_have_been_counted_is_counted_again_from_the_database(
    registry: dict[str, Any], alice: Any
) -> None:
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1"))
    checked(alice.pk)
    now = timezone.now()
    spec = call_spec("up/gpt-4o-mini", prompt="Hi", call_id="chatcmpl-twice", created_at=now, user_id=alice.pk)
    booked = usage_record_new(_booking(spec))
    assert usage_record_insert(booked) is True
    async_to_sync(spend_count)([booked])
    assert counter("user", alice.pk, "month", now) == 88500

    async_to_sync(spend_recount)(booked)

    assert counter("user", alice.pk, "month", now) is None
    assert checked(alice.pk).block is None
    assert counter("user", alice.pk, "month", now) == 88500


def test_records_inserted_together_are_written_at_once_and_a_call_booked_already_is_told_apart(
    registry: dict[str, Any], alice: Any, django_assert_max_num_queries: Any
) -> None:
    def spec(call_id: str) -> CallSpec:
        return call_spec("up/gpt-4o-mini", prompt="Hi", call_id=call_id, user_id=alice.pk)

    together = [usage_record_new(_booking(spec(f"chatcmpl-together-{n}"))) for n in range(5)]
    # One statement for the five, one for the hour rollup and one for the day rollups they share (at most a
    # savepoint and its release besides). SQLite's rollup statements go past Django's cursor, so it counts fewer.
    with django_assert_max_num_queries(5):
        assert usage_records_insert(together) == [True] * 5
    assert all(record.pk for record in together)

    again = [usage_record_new(_booking(spec(f"chatcmpl-together-{n}"))) for n in (5, 1, 6)]
    assert usage_records_insert(again) == [True, False, True]
    ids = UsageRecord.objects.filter(request_id__startswith="chatcmpl-together-").values_list("request_id", flat=True)
    assert sorted(ids) == [f"chatcmpl-together-{n}" for n in range(7)]


def test_the_check_names_the_blocking_cap_and_finds_none_without_caps(alice: Any, bob: Any) -> None:
    team = Team.objects.create(name="Acme", slug="acme")
    record(timezone.now(), "0.0002", user=alice, team=team)
    SpendCap.objects.create(team=team, limit_usd=Decimal("0.0002"))

    blocked = checked(alice.pk, team.pk)

    assert blocked.block is not None
    assert blocked.block.message.startswith(
        "Team Acme's monthly cap of $0.0002 is used up ($0.0002 spent); it resets on "
    )
    assert blocked.warnings == ()
    assert checked(alice.pk).block is None
    assert checked(bob.pk).block is None


def test_warnings_list_the_most_used_cap_first_in_a_header_safe_line(alice: Any) -> None:
    team = Team.objects.create(name="Ærø\r\nteam", slug="aero")
    record(timezone.now(), "0.9", user=alice, team=team)
    SpendCap.objects.create(team=team, limit_usd=Decimal("1"))
    SpendCap.objects.create(user=alice, limit_usd=Decimal("1.0500"), soft_threshold=Decimal("0.5"))

    check = checked(alice.pk, team.pk)

    assert [w.percent_used for w in check.warnings] == [90, 85]
    assert check.warnings[0].message.startswith("Team Ærø\r\nteam's monthly cap is 90% used ($0.90 of $1.00)")
    assert check.warning_text is not None
    header = header_value(check.warning_text)
    assert header.startswith("Team ?r???team's monthly cap is 90% used ($0.90 of $1.00), resetting ")
    assert "; User alice's monthly cap is 85% used ($0.90 of $1.05)" in header


def test_a_capless_subject_is_checked_without_the_database_once_cached(
    alice: Any, django_assert_num_queries: Any
) -> None:
    assert checked(alice.pk).block is None
    with django_assert_num_queries(0):
        assert checked(alice.pk).block is None


def test_caps_reload_when_redis_lost_the_version_token(alice: Any) -> None:
    record(timezone.now(), "1", user=alice)
    assert checked(alice.pk).block is None
    # bulk_create sends no signal: as if the cap was saved while Redis was away.
    SpendCap.objects.bulk_create([SpendCap(user=alice, limit_usd=Decimal("1"))])
    assert checked(alice.pk).block is None

    get_redis().delete(rules.VERSION_KEY)

    assert checked(alice.pk).block is not None


def test_a_cap_saved_while_redis_was_away_applies_once_the_cached_rules_are_old(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "RULES_MAX_AGE_SECONDS", 0.3)
    record(timezone.now(), "1", user=alice)
    assert checked(alice.pk).block is None
    # bulk_create sends no signal: the version token stays, as when Redis was unreachable at the save.
    SpendCap.objects.bulk_create([SpendCap(user=alice, limit_usd=Decimal("1"))])
    assert checked(alice.pk).block is None

    time.sleep(0.4)

    assert checked(alice.pk).block is not None


def test_a_cap_applies_to_exactly_one_subject(alice: Any) -> None:
    team = Team.objects.create(name="Acme", slug="acme")
    with pytest.raises(IntegrityError):
        SpendCap.objects.create(user=alice, team=team, limit_usd=Decimal("1"))
    with pytest.raises(IntegrityError):
        SpendCap.objects.create(limit_usd=Decimal("1"))
