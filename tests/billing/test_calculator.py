"""The cost calculator (/teams/<slug>/calculator/): figures checked by hand, the fill, access, form errors.

The registry: sim/cheap ($0.15 / $0.60 per million), sim/dear ($2.50 / $10
today, $5 / $20 before, $100 / $100 from next week), sim/local (no price),
sim/free (marked free); routes "coding" (cheap, then dear), "chat" (local,
then cheap) and "draft" (local only).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from billing.dashboards.calculator import MAX_REQUESTS, form_data
from billing.models import Team, TeamMembership, UsageRecord
from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

NOW = dt.datetime.now(dt.UTC)
MILLION = Decimal(1_000_000)
CHEAP = (Decimal("0.15"), Decimal("0.60"))
DEAR = (Decimal("2.50"), Decimal(10))


def cost(price: tuple[Decimal, Decimal], requests: int, tokens_in: int, tokens_out: int) -> Decimal:
    """A month of `requests` calls of these average tokens, by hand."""
    return (requests * tokens_in * price[0] + requests * tokens_out * price[1]) / MILLION


@dataclass
class Cast:
    olivia: Any
    mike: Any
    gina: Any
    staff: Any
    acme: Team
    globex: Team


@pytest.fixture
def cast(django_user_model: Any) -> Cast:
    sim = Provider.objects.create(name="sim", kind="simulated")

    def model(name: str, *prices: tuple[dt.timedelta, str, str], **fields: Any) -> LanguageModel:
        created = LanguageModel.objects.create(
            public_id=f"sim/{name}",
            provider=sim,
            upstream_name=name,
            context_window=8_000,
            max_output_tokens=4_096,
            **fields,
        )
        for age, price_in, price_out in prices:
            ModelPrice.objects.create(
                model=created,
                valid_from=NOW - age,
                input_per_million=Decimal(price_in),
                output_per_million=Decimal(price_out),
            )
        return created

    cheap = model("cheap", (dt.timedelta(days=90), "0.15", "0.60"))
    dear = model(
        "dear",
        (dt.timedelta(days=90), "5", "20"),
        (dt.timedelta(days=1), "2.50", "10"),
        (-dt.timedelta(days=7), "100", "100"),
    )
    local = model("local")
    model("free", free=True)
    for name, chain in (("coding", [cheap, dear]), ("chat", [local, cheap]), ("draft", [local])):
        route = Route.objects.create(name=name)
        for position, step in enumerate(chain):
            RouteStep.objects.create(route=route, model=step, position=position)
    olivia, mike, gina = (django_user_model.objects.create_user(n) for n in ("olivia", "mike", "gina"))
    staff = django_user_model.objects.create_user("sam", is_staff=True)
    acme = Team.objects.create(name="Acme", slug="acme")
    globex = Team.objects.create(name="Globex", slug="globex")
    TeamMembership.objects.create(team=acme, user=olivia, role=TeamMembership.Role.OWNER)
    TeamMembership.objects.create(team=acme, user=mike)
    TeamMembership.objects.create(team=globex, user=gina)
    return Cast(olivia, mike, gina, staff, acme, globex)


def calculator(user: Any, rows: list[dict[str, Any]] | None = None, *, slug: str = "acme", **params: Any) -> Any:
    client = Client()
    client.force_login(user)
    query = form_data(rows, params.pop("compare", "sim/dear")).urlencode() if rows is not None else ""
    extra = urlencode({key: value for key, value in params.items() if not key.startswith("HTTP_")})
    headers = {key: value for key, value in params.items() if key.startswith("HTTP_")}
    url = reverse("billing-team-calculator", args=[slug])
    return client.get(f"{url}?{'&'.join(part for part in (query, extra) if part)}", **headers)


def row(target: str, requests: int, tokens_in: int, tokens_out: int, task: str = "coding") -> dict[str, Any]:
    return {
        "task": task,
        "target": target,
        "requests": requests,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
    }


def test_a_models_month_costs_its_tokens_at_todays_price_beside_the_compared_model(cast: Cast) -> None:
    response = calculator(cast.mike, [row("sim/cheap", 12_345, 1_234, 567), row("sim/dear", 10, 100, 50, task="chat")])
    assert response.status_code == 200
    estimate = response.context["page"].estimate
    cheap_row, dear_row = estimate.rows
    assert cheap_row.monthly == cost(CHEAP, 12_345, 1_234, 567)
    assert cheap_row.yearly == 12 * cost(CHEAP, 12_345, 1_234, 567)
    # The price book's row in force today: not last quarter's, not next week's.
    assert cheap_row.compared == cost(DEAR, 12_345, 1_234, 567)
    assert cheap_row.saving == cost(DEAR, 12_345, 1_234, 567) - cost(CHEAP, 12_345, 1_234, 567)
    assert dear_row.monthly == dear_row.compared == cost(DEAR, 10, 100, 50)
    assert dear_row.saving == 0
    assert estimate.monthly == cost(CHEAP, 12_345, 1_234, 567) + cost(DEAR, 10, 100, 50)
    assert estimate.yearly == 12 * estimate.monthly
    assert estimate.compared == cost(DEAR, 12_345, 1_234, 567) + cost(DEAR, 10, 100, 50)
    html = response.content.decode()
    # 12,345 × (1,234 × $0.15 + 567 × $0.60) / 1M = $6.4848285, shown to the cent, rounded down.
    assert cost(CHEAP, 12_345, 1_234, 567) == Decimal("6.4848285")
    assert 'data-testid="row-monthly">$6.48<' in html
    assert 'data-testid="row-yearly">$77.81<' in html


def test_a_route_is_priced_at_the_mix_that_answered_its_last_30_days(cast: Cast) -> None:
    acme = {"team": cast.acme, "user": cast.mike, "route": "coding"}
    book(
        *(usage_record(at=NOW - dt.timedelta(days=d), model="sim/cheap", **acme) for d in (1, 2, 3)),
        usage_record(at=NOW - dt.timedelta(days=4), model="sim/dear", **acme),
        # Older than 30 days, another team's, and a call no model answered: none counts.
        usage_record(at=NOW - dt.timedelta(days=40), model="sim/dear", **acme),
        usage_record(at=NOW, model="sim/dear", route="coding", team=cast.globex, user=cast.gina),
        usage_record(at=NOW, model="", status=UsageRecord.Status.ERROR, input_tokens=0, output_tokens=0, **acme),
    )
    estimate = calculator(cast.mike, [row("coding", 1_000, 2_000, 400)]).context["page"].estimate
    (coding,) = estimate.rows
    assert coding.is_route
    assert coding.monthly == (3 * cost(CHEAP, 1_000, 2_000, 400) + cost(DEAR, 1_000, 2_000, 400)) / 4
    assert coding.basis == "as its 4 calls of the last 30 days were answered: 75% sim/cheap, 25% sim/dear"


def test_a_route_without_calls_is_priced_at_its_first_priced_model_and_an_unpriced_one_is_flagged(cast: Cast) -> None:
    response = calculator(
        cast.mike,
        [
            row("chat", 100, 1_000, 1_000, task="chat"),
            row("draft", 100, 1_000, 1_000, task="drafts"),
            row("sim/free", 5, 10, 10),
        ],
    )
    estimate = response.context["page"].estimate
    chat, draft, free = estimate.rows
    assert chat.monthly == cost(CHEAP, 100, 1_000, 1_000)
    assert chat.basis == "no calls in the last 30 days: at its first priced model, sim/cheap"
    assert (draft.monthly, draft.yearly, draft.saving, draft.unpriced) == (None, None, None, ("sim/local",))
    # Marked free: truly $0, not unknown.
    assert (free.monthly, free.unpriced) == (Decimal(0), ())
    # The totals are the priced rows', set against the same rows on the compared model.
    assert estimate.monthly == cost(CHEAP, 100, 1_000, 1_000)
    assert estimate.compared == cost(DEAR, 100, 1_000, 1_000) + cost(DEAR, 5, 10, 10)
    html = response.content.decode()
    assert "No price for sim/local" in html
    assert 'data-testid="row-monthly">–<' in html
    assert "of the 2 priced rows" in html


def test_comparing_with_an_unpriced_model_says_so(cast: Cast) -> None:
    response = calculator(cast.mike, [row("sim/cheap", 100, 1_000, 1_000)], compare="sim/local")
    estimate = response.context["page"].estimate
    assert (estimate.compared, estimate.saving, estimate.rows[0].compared) == (None, None, None)
    assert "sim/local has no price" in response.content.decode()


def test_filling_from_the_last_30_days_makes_a_row_per_route_and_per_model_asked_directly(cast: Cast) -> None:
    acme = {"team": cast.acme, "user": cast.mike}
    book(
        usage_record(
            at=NOW - dt.timedelta(days=2),
            model="sim/cheap",
            route="coding",
            input_tokens=1_000,
            output_tokens=500,
            **acme,
        ),
        usage_record(
            at=NOW - dt.timedelta(days=3),
            model="sim/dear",
            route="coding",
            input_tokens=3_000,
            output_tokens=1_501,
            **acme,
        ),
        usage_record(
            at=NOW - dt.timedelta(days=4),
            model="sim/cheap",
            route="coding",
            input_tokens=2_000,
            output_tokens=1_000,
            **acme,
        ),
        usage_record(at=NOW - dt.timedelta(hours=2), model="sim/dear", input_tokens=700, output_tokens=70, **acme),
        usage_record(at=NOW - dt.timedelta(days=45), model="sim/dear", route="chat", **acme),
        usage_record(at=NOW, model="sim/cheap", route="chat", team=cast.globex, user=cast.gina),
    )
    response = calculator(cast.mike, [row("sim/cheap", 1, 1, 1)], action="fill")
    page = response.context["page"]
    assert page.fill.calls == 4
    booked = UsageRecord.objects.filter(team=cast.acme, created_at__gte=NOW - dt.timedelta(days=30))
    assert page.fill.booked == sum(record.cost_usd for record in booked)
    rows = [form.cleaned_data for form in page.formset.forms]
    assert rows == [
        # 3 calls: (1,000 + 3,000 + 2,000) / 3 in, (500 + 1,501 + 1,000) / 3 = 1,000.33 out, rounded.
        {"task": "coding", "target": "coding", "requests": 3, "input_tokens": 2_000, "output_tokens": 1_000},
        {"task": "sim/dear", "target": "sim/dear", "requests": 1, "input_tokens": 700, "output_tokens": 70},
    ]
    coding, dear = page.estimate.rows
    mix = (2 * cost(CHEAP, 3, 2_000, 1_000) + cost(DEAR, 3, 2_000, 1_000)) / 3
    assert coding.monthly == mix.quantize(Decimal("0.0000000001"))
    assert dear.monthly == cost(DEAR, 1, 700, 70)
    html = response.content.decode()
    assert "stores no task type per call" in html
    # The address then holds the filled rows, without the button.
    assert "action" not in page.query and "rows-1-target=sim%2Fdear" in page.query


def test_filling_leaves_out_and_names_the_routes_and_models_no_longer_offered(cast: Cast) -> None:
    acme = {"team": cast.acme, "user": cast.mike}
    book(
        usage_record(at=NOW - dt.timedelta(days=2), model="sim/cheap", route="coding", **acme),
        usage_record(at=NOW - dt.timedelta(days=2), model="sim/cheap", route="retired", **acme),
        usage_record(at=NOW - dt.timedelta(days=3), model="sim/gone", **acme),
        usage_record(at=NOW - dt.timedelta(days=3), model="sim/gone", **acme),
    )
    coding = Route.objects.get(name="coding")
    coding.enabled = False
    coding.save()

    response = calculator(cast.mike, [row("sim/cheap", 7, 1, 1)], action="fill")
    page = response.context["page"]
    # Nothing left to fill from: the rows stay as they were, and the note says where the calls went.
    assert (page.fill.calls, page.fill.gone, page.fill.gone_calls) == (4, ["coding", "retired", "sim/gone"], 4)
    assert [form.cleaned_data["requests"] for form in page.formset.forms] == [7]
    assert "went to coding, retired, sim/gone, none of them offered here now" in response.content.decode()

    coding.enabled = True
    coding.save()
    response = calculator(cast.mike, [row("sim/cheap", 7, 1, 1)], action="fill")
    page = response.context["page"]
    assert [form.cleaned_data["target"] for form in page.formset.forms] == ["coding"]
    assert page.estimate is not None and page.fill.left_out == 0
    assert "The 3 calls of retired, sim/gone, no longer offered here, are left out." in response.content.decode()


def test_filling_with_no_calls_keeps_the_rows_and_says_why(cast: Cast) -> None:
    page = calculator(cast.mike, [row("sim/cheap", 7, 1, 1)], action="fill").context["page"]
    assert page.fill.loads == []
    assert [form.cleaned_data["requests"] for form in page.formset.forms] == [7]


def test_buttons_add_and_remove_rows_and_htmx_gets_only_what_changed(cast: Cast) -> None:
    rows = [row("sim/cheap", 1, 1, 1, task="a"), row("sim/dear", 2, 2, 2, task="b")]
    added = calculator(cast.mike, rows, action="add", HTTP_HX_REQUEST="true")
    html = added.content.decode()
    assert html.lstrip().startswith('<form id="calculator"')
    assert html.count('data-testid="calc-row"') == 3
    assert "rows-TOTAL_FORMS=3" in added["HX-Replace-Url"] and "action" not in added["HX-Replace-Url"]
    removed = calculator(cast.mike, rows, action="remove-0").context["page"]
    assert [form.cleaned_data["task"] for form in removed.formset.forms] == ["b"]
    typed = calculator(cast.mike, rows, HTTP_HX_REQUEST="true")
    assert typed.content.decode().lstrip().startswith('<section id="calc-results"')
    assert "HX-Request" in typed["Vary"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row("sim/cheap", -1, 10, 10), "greater than or equal to 0"),
        (row("sim/cheap", MAX_REQUESTS + 1, 10, 10), "less than or equal to 1000000000"),
        (row("sim/cheap", 10, 10**12, 10), "less than or equal to 2000000"),
        (row("sim/cheap", "many", 10, 10), "Enter a whole number"),
        (row("nope/model", 10, 10, 10), "nope/model is not an enabled route or model"),
        (row("sim/cheap", 10, 9_000, 10), "sim/cheap takes at most 8,000 tokens of input"),
        (row("sim/cheap", 10, 10, 10, task=""), "This field is required"),
    ],
)
def test_bad_input_is_a_form_error_not_a_500(cast: Cast, bad: dict[str, Any], message: str) -> None:
    response = calculator(cast.mike, [bad])
    assert response.status_code == 200
    assert response.context["page"].estimate is None
    html = response.content.decode()
    assert 'data-testid="calc-errors"' in html
    assert message in html


def test_a_tampered_formset_or_compared_model_is_a_form_error(cast: Cast) -> None:
    client = Client()
    client.force_login(cast.mike)
    url = reverse("billing-team-calculator", args=["acme"])
    for query in (
        "rows-TOTAL_FORMS=abc",
        "rows-TOTAL_FORMS=5000&rows-INITIAL_FORMS=0",
        "compare=nope&rows-TOTAL_FORMS=0",
    ):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 200
        assert 'data-testid="calc-errors"' in response.content.decode()
    assert calculator(cast.mike, [row("sim/cheap", 1, 1, 1)], compare="coding").context["page"].estimate is None
    # A link without a compared model compares with the dearest priced one.
    response = client.get(f"{url}?{form_data([row('sim/cheap', 1, 1, 1)], '').urlencode().replace('&compare=', '')}")
    assert response.context["page"].estimate.compare == "sim/dear"
    assert "sim/local (no price)" in response.content.decode()


def test_the_calculator_is_a_tab_of_the_team_and_another_teams_is_a_404(cast: Cast) -> None:
    response = calculator(cast.mike)
    assert response.status_code == 200
    assert 'data-testid="tab-calculator"' in response.content.decode()
    # With no rows typed yet: one blank row, the dearest priced model to compare with, no figures.
    page = response.context["page"]
    assert (page.formset.total_form_count(), page.compare_form["compare"].value(), page.estimate) == (
        1,
        "sim/dear",
        None,
    )
    assert calculator(cast.mike, slug="globex").status_code == 404
    assert calculator(cast.mike, slug="nobody").status_code == 404
    assert calculator(cast.gina, [row("sim/cheap", 1, 1, 1)], action="fill").status_code == 404
    assert calculator(cast.staff, slug="globex").status_code == 200
    assert Client().get(reverse("billing-team-calculator", args=["acme"])).status_code == 302


def test_the_largest_figures_allowed_are_priced_exactly(cast: Cast) -> None:
    biggest = row("sim/dear", MAX_REQUESTS, 8_000, 1_000_000)
    (dear,) = calculator(cast.mike, [biggest]).context["page"].estimate.rows
    assert dear.monthly == cost(DEAR, MAX_REQUESTS, 8_000, 1_000_000) == Decimal("10020000000")
    assert dear.yearly == Decimal("120240000000")
