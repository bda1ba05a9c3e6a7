"""Day rollups: kept by each booking, equal to the records (check_rollups), folded on deletion, and read by the
cards wherever their filters allow, with the very figures the hour rollups give."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F, Sum

from billing.dashboards import selectors
from billing.dashboards.access import PersonalAccess, TeamAccess, UsageScope
from billing.dashboards.filters import Filters
from billing.dashboards.overview import chart_figures
from billing.dashboards.sources import GRAIN_OF, card_rollups
from billing.models import ApiKey, Team, TeamMembership, UsageDayRollup, UsageRecord, UsageRollup
from billing.money import to_units
from billing.services import api_key_create
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

# A Sunday: the ledger runs from Friday to the next Wednesday, across a week's and a month's turn.
NOV_27 = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return NOV_27 + dt.timedelta(days=day, hours=hour, minutes=minute)


@pytest.fixture
def acme(django_user_model: Any) -> dict[str, Any]:
    """Team Acme: owner olivia (key ci) and member mike (key mine), with calls over six days, and a call of Globex."""
    olivia, mike = (django_user_model.objects.create_user(name) for name in ("olivia", "mike"))
    team = Team.objects.create(name="Acme", slug="acme")
    globex = Team.objects.create(name="Globex", slug="globex")
    TeamMembership.objects.create(team=team, user=olivia, role=TeamMembership.Role.OWNER)
    TeamMembership.objects.create(team=team, user=mike, role=TeamMembership.Role.MEMBER)
    ci, _ = api_key_create(user=olivia, name="ci", team=team)
    mine, _ = api_key_create(user=mike, name="mine", team=team)
    gpt = {"model": "up/gpt-4o", "input_price_per_million": Decimal("2.5"), "output_price_per_million": Decimal(10)}
    calls = []
    for day in range(6):
        for hour, minute in ((0, 5), (7, 30), (13, 0), (23, 59)):
            n = day * 4 + hour
            calls.append(
                usage_record(
                    at=at(day, hour, minute),
                    team=team,
                    user=olivia if n % 3 else mike,
                    api_key=ci if n % 3 else (mine if n % 2 else None),
                    route="auto" if n % 2 else "",
                    latency_ms=40 + 97 * n,
                    ttft_ms=None if n % 5 == 0 else 20 + 31 * n,
                    fell_back=n % 7 == 0,
                    status=UsageRecord.Status.ERROR if n % 11 == 0 else UsageRecord.Status.OK,
                    input_tokens=1_000 + n,
                    **(gpt if n % 4 == 0 else {"model": "up/mini"}),
                )
            )
    calls.append(usage_record(at=at(2, 9), team=team, user=mike, model="up/free", input_price_per_million=None))
    book(*calls)
    book(usage_record(at=at(2, 9), team=globex, user=mike, model="up/mini"))
    return {"team": team, "olivia": olivia, "mike": mike, "ci": ci, "mine": mine, "globex": globex}


def test_a_booking_adds_to_its_teams_day_rollups_per_model_and_route_and_per_user_and_key(
    acme: dict[str, Any],
) -> None:
    day_two = UsageDayRollup.objects.filter(team_id=acme["team"].pk, day=at(2, 0))
    records = UsageRecord.objects.filter(team=acme["team"], created_at__gte=at(2, 0), created_at__lt=at(3, 0))
    assert records.count() == 5
    for grain, field, empty in (
        ("model_route", "model", ""),
        ("model_route", "route", ""),
        ("user_key", "user_id", 0),
        ("user_key", "api_key_id", 0),
    ):
        rows = day_two.filter(grain=grain).values(field).annotate(n=Sum("requests"))
        assert {row[field]: row["n"] for row in rows} == Counter(getattr(r, field) or empty for r in records)
    mini = day_two.filter(grain="model_route", model="up/mini")
    assert set(mini.values_list("user_id", "api_key_id")) == {(0, 0)}
    minis = records.filter(model="up/mini")
    assert mini.aggregate(n=Sum("requests"))["n"] == minis.count()
    assert mini.aggregate(cost=Sum("cost_units"))["cost"] == sum(to_units(r.cost_usd or Decimal(0)) for r in minis)
    assert mini.aggregate(tokens=Sum("input_tokens"))["tokens"] == sum(record.input_tokens for record in minis)
    assert day_two.get(grain="model_route", model="up/free").unpriced == 1
    # Globex's call is Globex's.
    assert UsageDayRollup.objects.get(team_id=acme["globex"].pk, grain="user_key").requests == 1
    call_command("check_rollups")


def test_check_rollups_names_a_day_rollup_that_differs_and_rebuild_mends_it(acme: dict[str, Any], capsys: Any) -> None:
    UsageDayRollup.objects.filter(grain="model_route", model="up/mini", route="auto", day=at(1, 0)).update(
        cost_units=F("cost_units") + 1
    )
    UsageDayRollup.objects.create(
        day=at(-3, 0), team_id=acme["team"].pk, grain="model_route", model="ghost", requests=2
    )
    UsageDayRollup.objects.filter(grain="user_key", day=at(4, 0), api_key_id=acme["ci"].pk).delete()
    with pytest.raises(CommandError, match="0 rollups differ from their records .*; 3 day rollups differ"):
        call_command("check_rollups", "--since", "2026-11-20")
    out = capsys.readouterr().out
    team, olivia, ci = acme["team"].pk, acme["olivia"].pk, acme["ci"].pk
    assert f"2026-11-28 team={team} model=up/mini route=auto: cost_units" in out
    assert f"2026-11-24 team={team} model=ghost route=-: a day rollup with no hour rollups" in out
    assert f"2026-12-01 team={team} user={olivia} key={ci}: hour rollups with no day rollup" in out

    call_command("check_rollups", "--rebuild", "--since", "2026-11-20")
    assert "the day rollups their hour rollups" in capsys.readouterr().out
    assert not UsageDayRollup.objects.filter(model="ghost").exists()


def test_deleting_a_user_a_key_or_a_team_folds_their_day_rollups_as_their_records(acme: dict[str, Any]) -> None:
    team, mike = acme["team"], acme["mike"]
    mikes = UsageRecord.objects.filter(team=team, user=mike).count()
    mike.delete()
    call_command("check_rollups")
    assert not UsageDayRollup.objects.filter(user_id=mike.pk).exists()
    nobodys = UsageDayRollup.objects.filter(team_id=team.pk, grain="user_key", user_id=0)
    assert (
        nobodys.aggregate(n=Sum("requests"))["n"] == mikes == UsageRecord.objects.filter(team=team, user=None).count()
    )
    acme["ci"].delete()
    call_command("check_rollups")
    assert not UsageDayRollup.objects.filter(api_key_id=acme["ci"].pk).exists()
    team_id = team.pk
    team.delete()
    call_command("check_rollups")
    assert not UsageDayRollup.objects.filter(team_id=team_id).exists()
    # Acme's 25 calls and Globex's one are every call of "no team" now but Globex's.
    assert UsageDayRollup.objects.filter(team_id=0, grain="model_route").aggregate(n=Sum("requests"))["n"] == 25


def _filters(**fields: Any) -> Filters:
    defaults: dict[str, Any] = {
        "since": at(0, 0),
        "until": at(6, 0),
        "period": "custom",
        "bucket": "day",
        "stack": "model",
        "model": "",
        "route": "",
        "user_id": None,
        "key_id": None,
    }
    return Filters(**(defaults | fields))


def _figures(parts: list[Any], filters: Filters) -> dict[str, Any]:
    over = {
        (metric, stack): selectors.over_time(
            parts, since=filters.since, until=filters.until, bucket=filters.bucket, stack=stack, metric=metric
        )
        for metric in ("spend", "tokens")
        for stack in ("model", "route", "user", "key")
    }
    return {
        "totals": selectors.totals(parts),
        "over_time": {key: (series.buckets, series.values) for key, series in over.items()},
        "spend_by": {
            dimension: selectors.spend_by(parts, dimension) for dimension in ("model", "route", "user", "key")
        },
        "health": selectors.model_health(parts),
    }


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"bucket": "week"},
        {"bucket": "month"},
        # A period that starts and ends on the hour: its first and last hours from the hour rollups.
        {"since": at(0, 7), "until": at(5, 14)},
        {"since": at(1, 23), "until": at(3, 1), "bucket": "hour"},
        {"model": "up/mini"},
        {"route": "auto", "since": at(0, 13)},
        {"user": "mike"},
        {"key": "ci", "bucket": "week"},
        {"model": "up/mini", "route": "auto"},
        {"user": "olivia", "key": "ci", "bucket": "month"},
        {"model": "up/mini", "user": "mike"},
    ],
)
def test_every_card_gives_the_same_figures_from_day_rollups_as_from_hour_rollups(
    acme: dict[str, Any], changes: dict[str, Any]
) -> None:
    changes = dict(changes)
    if "user" in changes:
        changes["user_id"] = acme[changes.pop("user")].pk
    if "key" in changes:
        changes["key_id"] = acme[changes.pop("key")].pk
    filters = _filters(**changes)
    access = TeamAccess(team=acme["team"], viewer=acme["olivia"], role="owner", sees_members=True)
    hours_only = [access.rollups().filter(filters.rollup_q())]
    assert _figures(hours_only, filters)["totals"].requests > 0
    for grouped_by in ("model", "route", "user", "key"):
        parts = card_rollups(access, filters, grouped_by=grouped_by, bucketed=True)
        reads_days = parts[0].model is UsageDayRollup
        grains = {GRAIN_OF[dimension] for dimension in filters.dimensions() | {grouped_by}}
        assert reads_days == (len(grains) == 1 and filters.bucket != "hour"), f"{grouped_by}: {parts}"
        figures, expected = _figures(parts, filters), _figures(hours_only, filters)
        # Each card reads its own grouping; the figures of that grouping must match the hour rollups' exactly.
        assert figures["totals"] == expected["totals"]
        assert figures["spend_by"][grouped_by] == expected["spend_by"][grouped_by]
        assert figures["over_time"][("spend", grouped_by)] == expected["over_time"][("spend", grouped_by)]
        assert figures["over_time"][("tokens", grouped_by)] == expected["over_time"][("tokens", grouped_by)]
        if grouped_by == "model":
            assert figures["health"] == expected["health"]


def test_the_cards_figures_equal_sums_of_the_raw_records(acme: dict[str, Any]) -> None:
    """Spend by model over the six days, from the day rollups, summed by hand from the records."""
    access = TeamAccess(team=acme["team"], viewer=acme["olivia"], role="owner", sees_members=True)
    filters = _filters()
    assert card_rollups(access, filters, grouped_by="model")[0].model is UsageDayRollup
    shares = {share.key: share for share in chart_figures(access, filters, "by-model")["shares"]}
    for model in ("up/gpt-4o", "up/mini"):
        records = UsageRecord.objects.filter(team=acme["team"], model=model)
        assert shares[model].requests == records.count()
        assert shares[model].cost == sum((record.cost_usd or Decimal(0)) for record in records)
        assert shares[model].tokens == sum(record.input_tokens + record.output_tokens for record in records)
    health = {row.model: row for row in chart_figures(access, filters, "models")["health"]}
    errors = UsageRecord.objects.filter(team=acme["team"], model="up/mini", status=UsageRecord.Status.ERROR).count()
    assert health["up/mini"].errors == errors


def test_a_card_falls_back_to_hour_rollups_when_day_rollups_cannot_answer(acme: dict[str, Any]) -> None:
    team_access = TeamAccess(team=acme["team"], viewer=acme["olivia"], role="owner", sees_members=True)
    personal = PersonalAccess(viewer=acme["mike"])
    whole_days = _filters()
    cases: list[tuple[UsageScope, Filters, dict[str, Any]]] = [
        (team_access, replace(whole_days, bucket="hour"), {"bucketed": True}),
        (team_access, replace(whole_days, model="up/mini"), {"grouped_by": "user"}),
        (team_access, replace(whole_days, since=at(0, 1), until=at(0, 23)), {}),
        (personal, whole_days, {"grouped_by": "team"}),
    ]
    for access, filters, options in cases:
        parts = card_rollups(access, filters, **options)
        assert [part.model for part in parts] == [UsageRollup]


def test_a_key_is_an_api_key_even_when_its_owner_has_left(acme: dict[str, Any]) -> None:
    """A key's day rollups stay its own when the user who made it is deleted (the key goes with them)."""
    keys_before = set(ApiKey.objects.filter(team=acme["team"]).values_list("pk", flat=True))
    acme["olivia"].delete()
    call_command("check_rollups")
    gone = keys_before - set(ApiKey.objects.values_list("pk", flat=True))
    assert gone and not UsageDayRollup.objects.filter(api_key_id__in=gone).exists()
