"""manage.py generate_usage: a realistic mix of calls, priced as booking prices them, with rollups equal to them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Count, Q, Sum

from billing.models import UNPRICED, ApiKey, Team, TeamMembership, UsageRecord, UsageRollup
from billing.money import usage_cost
from billing.usage_generation import UNPRICED_MODEL
from routing.catalog import get_catalog

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_registry(redis_url: str) -> None:
    call_command("load_demo", stdout=None)


def generate(capsys: Any, *args: str) -> str:
    call_command("generate_usage", *args)
    out: str = capsys.readouterr().out
    return out


def test_it_writes_a_mix_of_calls_for_generated_teams_and_rolls_them_up(demo_registry: None, capsys: Any) -> None:
    out = generate(capsys, "--records=3000", "--teams=3", "--users=9", "--days=10", "--seed=7")
    assert "3,000 records inserted" in out
    records = UsageRecord.objects.all()
    assert records.count() == 3000
    assert Team.objects.filter(slug__startswith="gen-team-").count() == 3
    assert TeamMembership.objects.filter(team__slug__startswith="gen-team-").count() == 9
    assert TeamMembership.objects.filter(role=TeamMembership.Role.OWNER).count() == 3
    assert ApiKey.objects.filter(user__username__startswith="gen-user-").count() == 18
    mix = records.aggregate(
        models=Count("model", distinct=True),
        routes=Count("route", distinct=True),
        direct=Count("pk", filter=Q(route="")),
        errors=Count("pk", filter=Q(status=UsageRecord.Status.ERROR)),
        unanswered=Count("pk", filter=Q(status=UsageRecord.Status.ERROR, model="")),
        cancelled=Count("pk", filter=Q(status=UsageRecord.Status.CANCELLED)),
        fell_back=Count("pk", filter=Q(fell_back=True)),
        streamed=Count("ttft_ms"),
        playground=Count("pk", filter=Q(source=UsageRecord.Source.PLAYGROUND, api_key=None)),
        unpriced=Count("pk", filter=UNPRICED),
        cached=Count("pk", filter=Q(cached_input_tokens__gt=0)),
        writes=Count("pk", filter=Q(cache_write_tokens__gt=0)),
        reasoning=Count("pk", filter=Q(reasoning_tokens__gt=0)),
    )
    assert mix["models"] > 5 and mix["routes"] > 3 and mix["direct"] > 0
    assert all(mix[name] > 0 for name in mix), mix
    assert mix["streamed"] < 3000
    assert records.filter(model=UNPRICED_MODEL, cost_usd=None).exists()
    call_command("check_rollups")
    assert "The rollups equal the usage records" in capsys.readouterr().out
    assert UsageRollup.objects.aggregate(n=Sum("requests"))["n"] == 3000


def test_each_call_is_priced_by_the_price_book_of_its_moment(demo_registry: None, capsys: Any) -> None:
    generate(capsys, "--records=500", "--teams=1", "--users=2", "--days=600", "--seed=3")
    catalog = get_catalog()
    priced = UsageRecord.objects.exclude(cost_usd=None).exclude(model="")
    assert priced.count() > 250
    for record in priced:
        model = catalog.models[record.model]
        price = model.price_at(record.created_at)
        if model.free:
            assert record.cost_usd == 0
            continue
        assert price is not None
        assert (record.input_price_per_million, record.output_price_per_million) == (
            price.input_per_million,
            price.output_per_million,
        )
        assert record.cost_usd == usage_cost(
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            cached_input_tokens=record.cached_input_tokens,
            cache_write_tokens=record.cache_write_tokens,
            input_per_million=price.input_per_million,
            output_per_million=price.output_per_million,
            cached_input_per_million=price.cached_input_price,
            cache_write_per_million=price.cache_write_price,
        )
    # 600 days back reaches before the demo's price cut: the same model at two prices.
    prices = priced.values("model").annotate(n=Count("input_price_per_million", distinct=True)).filter(n__gt=1)
    assert prices.exists()
    assert priced.aggregate(total=Sum("cost_usd"))["total"] > Decimal(0)


def test_generating_again_adds_calls_to_the_same_people(demo_registry: None, capsys: Any) -> None:
    generate(capsys, "--records=200", "--teams=2", "--users=4", "--days=3")
    generate(capsys, "--records=300", "--teams=2", "--users=4", "--days=3")
    assert UsageRecord.objects.count() == 500
    assert get_user_model().objects.filter(username__startswith="gen-user-").count() == 4
    assert ApiKey.objects.count() == 8
    call_command("check_rollups")


def test_it_refuses_fewer_users_than_teams(demo_registry: None) -> None:
    with pytest.raises(CommandError, match="at least as many users as teams"):
        call_command("generate_usage", "--records=10", "--teams=3", "--users=2")
