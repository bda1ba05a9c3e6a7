"""The savings tab: savings and replays checked by hand on tests/money_ledger.py, access by role, bad input.

Every expected figure is worked out below from the ledger's prices and tokens, not from the code under test.
"""

from __future__ import annotations

import datetime as dt
import importlib
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.http import QueryDict
from django.test import Client
from django.urls import reverse

from billing.dashboards.access import team_access
from billing.dashboards.filters import FiltersForm
from billing.models import PLAIN_CONTEXT, PLAIN_OUTPUT, UsageRecord
from billing.money.replay import replay_under
from billing.money.savings import savings
from billing.money.selectors import period_sums
from routing.catalog import get_catalog
from routing.models import LanguageModel, ModelPrice, Route, RouteStep
from tests.money_ledger import DAY_A, DAY_B, PRICE_CHANGE, Ledger, ledger_create
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

M = Decimal(1_000_000)


def priced(fresh_in: int, out: int, price_in: float | str, price_out: float | str, **cache: tuple[int, str]) -> Decimal:
    """Tokens at prices per million, each cache part (tokens, price) on top: the provider's formula."""
    cost = fresh_in * Decimal(str(price_in)) + out * Decimal(str(price_out))
    for tokens, price in cache.values():
        cost += tokens * Decimal(price)
    return cost / M


# Each call on up/big: at $5/$20 ($0.50 cached, $6.25 writes) on DAY_A, at $10/$40 ($1, $12.50) on DAY_B.
CALL_1_ON_BIG = priced(1_000, 500, 5, 20)
CALL_2_ON_BIG = priced(600, 500, 10, 40, cached=(400, "1"))
CALL_3_ON_BIG = priced(2_000, 1_000, 10, 40, writes=(1_000, "12.5"))
CALL_4_ON_BIG = priced(2_000, 1_000, 5, 20)
BOOKED = {1: Decimal("0.003"), 2: Decimal("0.003"), 3: Decimal("0.0725"), 4: Decimal("0.03"), 5: Decimal("0.027")}


@pytest.fixture
def ledger(redis_url: str) -> Ledger:
    return ledger_create()


def figures(viewer: Any, query: str = "", compare: str = "", under: str = "") -> Any:
    access = team_access(viewer, "acme")
    form = FiltersForm(QueryDict(query), access=access)
    assert form.is_valid(), form.errors
    catalog = get_catalog()
    if under:
        return replay_under(access, form.filters(), catalog, under)
    return savings(access, form.filters(), catalog, compare)


def test_savings_default_to_the_dearest_model_that_answered_at_its_price_of_each_calls_hour(ledger: Ledger) -> None:
    result = figures(ledger.olivia).compared

    # big ($10 + $40 today) is dearer than long ($2 + $8) and small ($1 + $4).
    assert result.chain == ("up/big",)
    # Calls 1 to 4; 5 is too long for big's context, 6 unpriced, 7 of unknown needs.
    assert result.total.calls == 4
    assert result.total.real == BOOKED[1] + BOOKED[2] + BOOKED[3] + BOOKED[4] == Decimal("0.1085")
    assert result.total.replayed == CALL_1_ON_BIG + CALL_2_ON_BIG + CALL_3_ON_BIG + CALL_4_ON_BIG == Decimal("0.1439")
    assert figures(ledger.olivia).saved == Decimal("0.0354")


def test_a_price_changed_between_two_days_prices_each_days_calls_at_its_own(ledger: Ledger) -> None:
    days = {day.day.date(): day for day in figures(ledger.olivia).compared.days if day.calls}

    assert days[DAY_A.date()].replayed == CALL_1_ON_BIG + CALL_4_ON_BIG == Decimal("0.045")
    # Call 1's tokens again, at the new price, would have cost twice as much: DAY_B is priced at it.
    assert days[DAY_B.date()].replayed == CALL_2_ON_BIG + CALL_3_ON_BIG == Decimal("0.0989")
    assert days[DAY_B.date()].real == BOOKED[2] + BOOKED[3]


def test_calls_the_model_could_not_serve_are_counted_apart_with_what_they_cost(ledger: Ledger) -> None:
    result = figures(ledger.olivia, compare="up/small").compared

    # small serves calls 1 and 2 at its own prices (cached input at the input price: it has no cache price).
    assert result.total.calls == 2
    assert result.total.replayed == priced(1_000, 500, 1, 4) * 2 == Decimal("0.006")
    apart = {a.reason: (a.calls, a.real) for a in result.apart}
    assert len(apart) == 3
    could_not = next(v for k, v in apart.items() if k.startswith("that up/small could not have served"))
    # 3 needs tools, 4 vision, 5 is 10,500 tokens for a 2,000-token context.
    assert could_not == (3, BOOKED[3] + BOOKED[4] + BOOKED[5])
    assert next(v for k, v in apart.items() if k.startswith("booked with no price")) == (1, Decimal(0))
    assert next(v for k, v in apart.items() if k.startswith("booked before")) == (1, Decimal("0.003"))


def test_a_fixed_route_is_replayed_as_the_first_model_of_its_chain_that_could_serve_each_call(ledger: Ledger) -> None:
    result = figures(ledger.olivia, under="route:cheap")

    # small takes 1 and 2, big the tools and vision calls (3 and 4); no model of the chain takes 5.
    assert [(row.model, row.calls) for row in result.served_by] == [("up/big", 2), ("up/small", 2)]
    assert result.total.replayed == Decimal("0.006") + CALL_3_ON_BIG + CALL_4_ON_BIG
    assert result.strategy == ""


def test_a_model_is_replayed_on_its_own(ledger: Ledger) -> None:
    result = figures(ledger.olivia, under="model:up/long")

    # long serves 1, 2 (no cache price: cached input at its input price) and 5, none of the tools or vision calls.
    assert result.total.calls == 3
    assert result.total.replayed == priced(1_000, 500, 2, 8) * 2 + priced(9_500, 1_000, 2, 8) == Decimal("0.039")


def test_the_filters_narrow_the_calls_compared(ledger: Ledger) -> None:
    mikes = figures(ledger.olivia, f"user={ledger.mike.pk}").compared
    assert (mikes.total.calls, mikes.total.replayed) == (2, CALL_3_ON_BIG + CALL_4_ON_BIG)
    assert [(a.calls, a.real) for a in mikes.apart] == [(1, Decimal(0))]

    # Only small answered those: it is the default, so big is chosen.
    assert figures(ledger.olivia, "model=up/small").compared.chain == ("up/small",)
    smalls = figures(ledger.olivia, "model=up/small", compare="up/big").compared
    assert smalls.total.replayed == CALL_1_ON_BIG + CALL_2_ON_BIG
    assert smalls.total.real == BOOKED[1] + BOOKED[2]


def test_a_price_changed_within_a_day_prices_the_calls_before_and_after_it_at_their_own(ledger: Ledger) -> None:
    small = {"model": "up/small", "route": "cheap", "team": ledger.acme, "user": ledger.olivia}
    before = PRICE_CHANGE - dt.timedelta(hours=1)
    book(usage_record(at=before, **small), usage_record(at=PRICE_CHANGE, **small))
    # Days are whole in a custom period: the one, or two, holding those calls and nothing of the ledger's.
    query = f"period=custom&since={before.date()}&until={PRICE_CHANGE.date()}"

    result = figures(ledger.olivia, query, compare="up/big").compared

    assert result.total.calls == 2
    assert result.total.replayed == priced(1_000, 500, 5, 20) + priced(1_000, 500, 10, 40)
    # The day the price changed is summed hour by hour; the others are read whole, from the day rollups.
    access = team_access(ledger.olivia, "acme")
    form = FiltersForm(QueryDict(""), access=access)
    assert form.is_valid()
    sums = period_sums(access, form.filters(), get_catalog())
    assert midnight(DAY_A) in sums.days
    assert (midnight(PRICE_CHANGE) in sums.days) == (midnight(PRICE_CHANGE) == PRICE_CHANGE)


def midnight(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0)


def test_a_replay_on_a_model_larger_than_a_plain_call_reads_only_the_other_calls(ledger: Ledger) -> None:
    # Calls 1 and 2, and Acme's call of 40 days ago: priced, needing nothing, short.
    assert UsageRecord.objects.filter(team=ledger.acme, plain=True).count() == 3
    as_booked = figures(ledger.olivia, compare="up/big").compared

    UsageRecord.objects.update(plain=False)
    assert figures(ledger.olivia, compare="up/big").compared == as_booked

    # The flag is what narrows the read: call 5, too long for big, marked plain, would be taken to fit it.
    UsageRecord.objects.filter(model="up/long").update(plain=True)
    assert figures(ledger.olivia, compare="up/big").compared.total.calls == 5
    # A model smaller than a plain call reads every call: small still sets call 5 apart.
    assert figures(ledger.olivia, compare="up/small").compared.total.calls == 2


def test_the_migration_marks_the_calls_booked_before_as_booking_marks_them(ledger: Ledger) -> None:
    edges = [
        {"output_tokens": PLAIN_OUTPUT, "input_tokens": PLAIN_CONTEXT - PLAIN_OUTPUT},
        {"output_tokens": PLAIN_OUTPUT + 1, "input_tokens": 10},
        {"output_tokens": 10, "input_tokens": PLAIN_CONTEXT - 9},
        {"model": "", "cost_usd": None, "input_price_per_million": None, "status": UsageRecord.Status.ERROR},
        {"model": "local/free", "cost_usd": Decimal(0)},
        {"needs": "json"},
    ]
    book(*(usage_record(at=DAY_A, team=ledger.acme, user=ledger.olivia, **edge) for edge in edges))
    booked = dict(UsageRecord.objects.values_list("request_id", "plain"))
    # The ledger's four (Globex's too), the first edge, the failed call and the free one.
    assert list(booked.values()).count(True) == 7

    UsageRecord.objects.update(plain=False)
    importlib.import_module("billing.migrations.0011_usagerecord_plain").mark_plain(apps, None)

    assert dict(UsageRecord.objects.values_list("request_id", "plain")) == booked


def page(viewer: Any, query: str = "", slug: str = "acme") -> Any:
    client = Client()
    client.force_login(viewer)
    return client.get(reverse("billing-team-savings", args=[slug]) + query)


def test_the_page_shows_the_savings_and_the_replay(ledger: Ledger) -> None:
    response = page(ledger.olivia, "?compare=up/big&replay=route:cheap")

    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-testid="savings-real">$0.1085<' in text
    assert 'data-testid="savings-replayed">$0.1439<' in text
    assert 'data-testid="savings-saved">$0.0354<' in text
    assert 'data-testid="replay-replayed">$0.1085<' in text
    assert 'data-testid="figure-replay"' in text


def test_a_member_sees_the_teams_figures_but_cannot_narrow_them_to_another_member(ledger: Ledger) -> None:
    response = page(ledger.mike)
    assert response.status_code == 200
    assert 'data-testid="savings-real">$0.1085<' in response.content.decode()

    response = page(ledger.mike, f"?user={ledger.olivia.pk}")
    assert 'data-testid="filter-errors"' in response.content.decode()
    assert 'data-testid="savings-real"' not in response.content.decode()


def test_another_teams_savings_are_a_404(ledger: Ledger) -> None:
    assert page(ledger.gina).status_code == 404
    assert page(ledger.gina, slug="nowhere").status_code == 404
    assert page(ledger.staff).status_code == 200


@pytest.mark.parametrize(
    "query",
    ["?compare=no/such", "?replay=route:nowhere", "?replay=model:", "?period=never", "?since=x&period=custom"],
)
def test_bad_choices_are_a_form_error_not_a_500(ledger: Ledger, query: str) -> None:
    response = page(ledger.olivia, query)

    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-testid="money-errors"' in text or 'data-testid="filter-errors"' in text
    assert 'data-testid="savings-real"' not in text


def test_a_strategy_route_is_replayed_as_its_first_capable_model_and_the_page_says_so(ledger: Ledger) -> None:
    quick = Route.objects.create(name="quick", strategy="fastest", settings={"by": "ttft", "hours": 1, "min_calls": 20})
    for position, name in enumerate(["up/big", "up/small"]):
        RouteStep.objects.create(route=quick, model=LanguageModel.objects.get(public_id=name), position=position)

    result = figures(ledger.olivia, under="route:quick")

    # big, first, takes calls 1 to 4 whatever the strategy would have chosen: the savings' figures.
    assert result.strategy == "fastest"
    assert result.total.replayed == Decimal("0.1439")
    assert 'data-testid="replay-strategy"' in page(ledger.olivia, "?replay=route:quick").content.decode()


def test_hours_before_the_compared_model_had_a_price_are_counted_apart(ledger: Ledger) -> None:
    newer = LanguageModel.objects.create(
        provider=LanguageModel.objects.get(public_id="up/big").provider,
        public_id="up/newer",
        upstream_name="newer",
        context_window=200_000,
        max_output_tokens=8_000,
        capabilities=["tools", "vision"],
    )
    ModelPrice.objects.create(
        model=newer, valid_from=PRICE_CHANGE, input_per_million=Decimal(3), output_per_million=Decimal(15)
    )

    result = figures(ledger.olivia, compare="up/newer").compared

    # Calls 2, 3 and 5 (DAY_B) at its price, cached input and cache writes at its input price (it has none for them).
    assert result.total.calls == 3
    assert result.total.replayed == priced(1_000, 500, 3, 15) + priced(3_000, 1_000, 3, 15) + priced(
        9_500, 1_000, 3, 15
    )
    # Calls 1 and 4 (DAY_A) came before its first price.
    no_price = next(a for a in result.apart if a.reason.startswith("in hours"))
    assert (no_price.calls, no_price.real) == (2, BOOKED[1] + BOOKED[4])


def test_a_period_without_calls_says_so(ledger: Ledger) -> None:
    response = page(ledger.olivia, "?period=24h")

    assert response.status_code == 200
    assert 'data-testid="savings-empty"' in response.content.decode()
    assert 'data-testid="replay-calls">0<' in response.content.decode()


def test_a_calls_record_says_what_it_needed(ledger: Ledger) -> None:
    tools = UsageRecord.objects.get(needs="tools")
    client = Client()
    client.force_login(ledger.olivia)

    response = client.get(reverse("billing-team-record", args=["acme", tools.request_id]))

    assert 'data-testid="record-needs">tools<' in response.content.decode()
