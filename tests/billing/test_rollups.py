"""Rollups: kept by each booking, equal to their records (manage.py check_rollups), rebuilt when they are not."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from billing.models import Team, UsageRecord, UsageRollup
from billing.money import to_units
from billing.rollups.buckets import BOUNDS_MS, LATENCY_COLUMNS, TTFT_COLUMNS, percentile
from billing.services import api_key_create
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

NINE = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def test_calls_of_one_hour_team_user_key_model_and_route_sum_into_one_rollup(django_user_model) -> None:
    alice = django_user_model.objects.create_user("alice")
    book(
        usage_record(at=NINE + dt.timedelta(minutes=1), user=alice, latency_ms=40, ttft_ms=30),
        usage_record(at=NINE + dt.timedelta(minutes=59), user=alice, latency_ms=2_500, ttft_ms=None, fell_back=True),
    )
    book(
        usage_record(
            at=NINE + dt.timedelta(minutes=30),
            user=alice,
            status=UsageRecord.Status.ERROR,
            input_tokens=0,
            output_tokens=0,
            latency_ms=90_000,
            ttft_ms=None,
        ),
        usage_record(at=NINE + dt.timedelta(minutes=30), user=alice, input_price_per_million=None, cost_usd=None),
        # The next hour: a rollup of its own.
        usage_record(at=NINE + dt.timedelta(hours=1), user=alice),
    )
    nine = UsageRollup.objects.get(hour=NINE)
    assert (nine.user_id, nine.team_id, nine.api_key_id, nine.model, nine.route) == (alice.pk, 0, 0, "sim/quick", "")
    assert (nine.requests, nine.errors, nine.fell_back, nine.unpriced) == (4, 1, 1, 1)
    assert (nine.input_tokens, nine.output_tokens) == (3_000, 1_500)
    # Two answered priced calls of 1,000 tokens in at $1/M and 500 out at $4/M: $0.003 each; the failed one $0.
    assert nine.cost_units == to_units(Decimal("0.006"))
    assert nine.latency_ms_sum == 40 + 2_500 + 90_000 + 800
    assert [getattr(nine, c) for c in LATENCY_COLUMNS if getattr(nine, c)] == [1, 1, 1, 1]
    assert (nine.latency_b0, nine.latency_b15, nine.ttft_count, nine.ttft_b0) == (1, 1, 2, 1)
    assert sum(getattr(nine, c) for c in TTFT_COLUMNS) == 2
    assert UsageRollup.objects.get(hour=NINE + dt.timedelta(hours=1)).requests == 1
    call_command("check_rollups")


def test_check_rollups_names_a_rollup_that_differs_from_its_records_and_rebuild_mends_it(capsys) -> None:
    book(usage_record(at=NINE), usage_record(at=NINE + dt.timedelta(days=3), model="sim/slow"))
    UsageRollup.objects.filter(model="sim/slow").update(output_tokens=F("output_tokens") + 1)
    UsageRollup.objects.create(hour=NINE - dt.timedelta(days=1), model="ghost", requests=2)
    with pytest.raises(CommandError, match="2 rollups differ"):
        call_command("check_rollups")
    out = capsys.readouterr().out
    assert "model=sim/slow route=-: output_tokens 500 in records, 501 in rollup" in out
    assert "model=ghost route=-: a rollup with no records" in out

    call_command("check_rollups", "--rebuild", "--since", "2026-11-01")
    assert "The rollups equal the usage records" in capsys.readouterr().out
    assert not UsageRollup.objects.filter(model="ghost").exists()
    assert UsageRollup.objects.get(model="sim/slow").output_tokens == 500


def test_check_rollups_refuses_a_date_it_cannot_read() -> None:
    with pytest.raises(CommandError, match="is not a date"):
        call_command("check_rollups", "--since", "last tuesday")


def test_a_percentile_is_exact_to_its_bucket_and_interpolated_within() -> None:
    counts = [0] * (len(BOUNDS_MS) + 1)
    assert percentile(counts, 0.5) is None
    counts[LATENCY_COLUMNS.index("latency_b6")] = 4  # [750, 1000) ms
    assert percentile(counts, 0.5) == 875
    assert percentile(counts, 1.0) == 1000
    counts[-1] = 4  # 40 s or more: reported as 40 s
    assert percentile(counts, 0.95) == 40_000


def test_deleting_a_user_a_key_or_a_team_leaves_the_rollups_equal_to_the_records(django_user_model) -> None:
    alice, bob = (django_user_model.objects.create_user(name) for name in ("alice", "bob"))
    acme = Team.objects.create(name="Acme", slug="acme")
    alices, _ = api_key_create(user=alice, name="a", team=acme)
    bobs, _ = api_key_create(user=bob, name="b", team=acme)
    book(
        usage_record(at=NINE, user=alice, api_key=alices, team=acme),
        usage_record(at=NINE, user=bob, api_key=bobs, team=acme),
        usage_record(at=NINE, user=bob, team=acme),
        usage_record(at=NINE, team=acme),
    )
    alice.delete()
    call_command("check_rollups")
    bobs.delete()
    call_command("check_rollups")
    acme.delete()
    call_command("check_rollups")
    # Bob's two calls, now of no key and no team, and two calls of nobody.
    rollups = set(UsageRollup.objects.values_list("team_id", "user_id", "api_key_id", "requests"))
    assert rollups == {(0, bob.pk, 0, 2), (0, 0, 0, 2)}
