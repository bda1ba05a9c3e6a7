"""A team's overview: figures summed by hand on a known ledger, access by role, filters in the URL.

The ledger, booked as the worker books (so the rollups are kept as in production):
team Acme, owner olivia (key "ci") and member mike (key "mine"); team Globex, member gina.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from billing.dashboards.selectors import over_time
from billing.models import ApiKey, SpendCap, Team, TeamMembership, UsageRecord, UsageRollup
from billing.services import api_key_create
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

NOW = dt.datetime.now(dt.UTC)
AN_HOUR_AGO = NOW - dt.timedelta(hours=1)
TEN_DAYS_AGO = NOW - dt.timedelta(days=10)
FORTY_DAYS_AGO = NOW - dt.timedelta(days=40)


@dataclass
class Cast:
    olivia: Any
    mike: Any
    gina: Any
    staff: Any
    acme: Team
    globex: Team
    ci: ApiKey
    mine: ApiKey


@pytest.fixture
def cast(django_user_model: Any) -> Cast:
    olivia, mike, gina = (django_user_model.objects.create_user(n) for n in ("olivia", "mike", "gina"))
    staff = django_user_model.objects.create_user("sam", is_staff=True)
    acme = Team.objects.create(name="Acme", slug="acme")
    globex = Team.objects.create(name="Globex", slug="globex")
    TeamMembership.objects.create(team=acme, user=olivia, role=TeamMembership.Role.OWNER)
    TeamMembership.objects.create(team=acme, user=mike, role=TeamMembership.Role.MEMBER)
    TeamMembership.objects.create(team=globex, user=gina, role=TeamMembership.Role.MEMBER)
    ci, _ = api_key_create(user=olivia, name="ci", team=acme)
    mine, _ = api_key_create(user=mike, name="mine", team=acme)
    return Cast(olivia, mike, gina, staff, acme, globex, ci, mine)


@pytest.fixture
def ledger(cast: Cast) -> Cast:
    acme = {"team": cast.acme}
    olivias_gpt_4o = {
        "model": "up/gpt-4o",
        "route": "auto",
        "user": cast.olivia,
        "api_key": cast.ci,
        "input_price_per_million": Decimal("2.5"),
        "output_price_per_million": Decimal(10),
        **acme,
    }
    book(
        # olivia: 2 calls of gpt-4o through "auto" ($2.50/$10 per M): 1,000 in + 500 out = $0.0075 each.
        usage_record(at=AN_HOUR_AGO, latency_ms=900, **olivias_gpt_4o),
        usage_record(at=TEN_DAYS_AGO, latency_ms=1_900, fell_back=True, **olivias_gpt_4o),
        # mike: 3 calls of mini ($1/$4: $0.003 each), one failed ($0), one to an unpriced model.
        usage_record(at=AN_HOUR_AGO, model="up/mini", user=cast.mike, api_key=cast.mine, **acme),
        usage_record(at=AN_HOUR_AGO, model="up/mini", user=cast.mike, api_key=cast.mine, **acme),
        usage_record(
            at=AN_HOUR_AGO,
            model="up/mini",
            user=cast.mike,
            status=UsageRecord.Status.ERROR,
            input_tokens=0,
            output_tokens=0,
            ttft_ms=None,
            **acme,
        ),
        usage_record(
            at=AN_HOUR_AGO,
            model="local/llama",
            user=cast.mike,
            input_price_per_million=None,
            output_price_per_million=None,
            cost_usd=None,
            **acme,
        ),
        # Outside the default 30 days.
        usage_record(at=FORTY_DAYS_AGO, model="up/mini", user=cast.mike, **acme),
        # Another team's.
        usage_record(at=AN_HOUR_AGO, model="up/gpt-4o", user=cast.gina, team=cast.globex, cost_usd=Decimal(7)),
    )
    return cast


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(user: Any, slug: str = "acme", query: str = "", **headers: Any) -> Any:
    return logged_in(user).get(reverse("billing-team", args=[slug]) + query, **headers)


def chart(user: Any, name: str, query: str = "", slug: str = "acme") -> Any:
    return logged_in(user).get(reverse("billing-team-chart", args=[slug, name]) + query)


def test_the_overview_totals_the_period_for_every_role(ledger: Cast) -> None:
    for viewer in (ledger.olivia, ledger.mike, ledger.staff):
        response = page(viewer)
        assert response.status_code == 200
        totals = response.context["totals"]
        # $0.0075 × 2 + $0.003 × 2: the failed call cost nothing, the unpriced one is counted apart.
        assert totals.cost == Decimal("0.021")
        assert (totals.requests, totals.errors, totals.fell_back, totals.unpriced) == (6, 1, 1, 1)
        assert totals.tokens == 5 * 1_500
    html = page(ledger.mike).content.decode()
    assert 'data-testid="total-spend">$0.021<' in html
    assert 'data-testid="total-unpriced">1<' in html


def test_the_overview_shows_the_response_caches_hit_rate_and_savings(cast: Cast) -> None:
    acme = {"team": cast.acme, "user": cast.mike, "model": "up/mini"}
    book(
        usage_record(at=AN_HOUR_AGO, **acme),
        usage_record(at=AN_HOUR_AGO, **acme),
        usage_record(at=AN_HOUR_AGO, **acme),
        # The third call asked again: answered from the cache, what it would have cost is saved.
        usage_record(at=AN_HOUR_AGO, cost_usd=Decimal(0), cache_hit=True, cache_saving_usd=Decimal("0.003"), **acme),
    )
    totals = page(cast.mike).context["totals"]
    assert (totals.requests, totals.cache_hits, totals.cache_hit_rate) == (4, 1, 0.25)
    assert (totals.cost, totals.cache_saving) == (Decimal("0.009"), Decimal("0.003"))
    html = page(cast.mike).content.decode()
    assert 'data-testid="total-cache-hits">25' in html
    assert 'data-testid="total-cache-saving">$0.003<' in html


def test_filters_in_the_url_narrow_the_totals(ledger: Cast) -> None:
    assert page(ledger.olivia, query="?period=24h").context["totals"].cost == Decimal("0.0135")
    wide = f"?period=custom&since={(NOW - dt.timedelta(days=60)).date()}&until={NOW.date()}"
    assert page(ledger.olivia, query=wide).context["totals"].requests == 7
    assert page(ledger.olivia, query="?model=up/mini").context["totals"].requests == 3
    assert page(ledger.olivia, query="?route=auto").context["totals"].cost == Decimal("0.015")
    assert page(ledger.olivia, query=f"?user={ledger.mike.pk}").context["totals"].requests == 4
    assert page(ledger.olivia, query=f"?key={ledger.ci.pk}").context["totals"].requests == 2


def test_a_filter_it_cannot_read_is_a_form_error_not_a_500(ledger: Cast) -> None:
    response = page(ledger.olivia, query="?period=custom&since=2026-02-30")
    assert response.status_code == 200
    assert 'data-testid="filter-errors"' in response.content.decode()
    assert "totals" not in response.context
    assert page(ledger.olivia, query="?period=custom&since=2026-03-02&until=2026-03-01").context["form"].errors
    assert (
        page(ledger.olivia, query="?period=custom&since=2000-01-01&until=2026-01-01&bucket=hour").context["form"].errors
    )
    assert chart(ledger.olivia, "spend", "?period=never").status_code == 400


def test_an_htmx_filter_change_gets_the_partial_only(ledger: Cast) -> None:
    response = page(ledger.olivia, query="?period=7d", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="team-view"')
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]


def test_a_member_does_not_see_other_members_spend(ledger: Cast) -> None:
    assert chart(ledger.mike, "by-user").status_code == 404
    assert chart(ledger.mike, "by-key").status_code == 404
    assert chart(ledger.olivia, "by-user").status_code == 200
    # Mike may not filter by olivia, nor stack by user.
    assert page(ledger.mike, query=f"?user={ledger.olivia.pk}").context["form"].errors
    assert page(ledger.mike, query="?stack=user").context["form"].errors
    expensive = chart(ledger.mike, "expensive").context["calls"]
    assert {call.user for call in expensive} == {ledger.mike}
    # The priced calls that cost something: not the failed one, not the unpriced one.
    assert len(chart(ledger.olivia, "expensive").context["calls"]) == 4


def test_every_page_of_another_team_is_a_404(ledger: Cast) -> None:
    record = UsageRecord.objects.get(user=ledger.gina)
    assert page(ledger.mike, slug="globex").status_code == 404
    assert page(ledger.mike, slug="nobody").status_code == 404
    assert chart(ledger.mike, "spend", slug="globex").status_code == 404
    client = logged_in(ledger.mike)
    assert client.get(reverse("billing-team-record", args=["globex", record.request_id])).status_code == 404
    # Nor is another team's record found through one's own team.
    assert client.get(reverse("billing-team-record", args=["acme", record.request_id])).status_code == 404
    assert page(ledger.staff, slug="globex").status_code == 200
    anonymous = Client().get(reverse("billing-team", args=["acme"]))
    assert anonymous.status_code == 302


def test_charts_sum_what_the_totals_sum(ledger: Cast) -> None:
    spend = chart(ledger.olivia, "spend", "?stack=user")
    assert spend.status_code == 200
    assert 'class="plotly-graph-div"' in spend.content.decode()
    by_model = {share.label: share for share in chart(ledger.olivia, "by-model").context["shares"]}
    assert by_model["up/gpt-4o"].cost == Decimal("0.015")
    assert by_model["up/mini"].cost == Decimal("0.006")
    assert by_model["up/mini"].requests == 3
    assert by_model["local/llama"].unpriced == 1
    by_user = {share.label: share.cost for share in chart(ledger.olivia, "by-user").context["shares"]}
    assert by_user == {"olivia": Decimal("0.015"), "mike": Decimal("0.006")}
    health = {row.model: row for row in chart(ledger.olivia, "models").context["health"]}
    assert health["up/mini"].error_rate == pytest.approx(1 / 3)
    assert health["up/gpt-4o"].fallback_rate == 0.5
    # 900 ms and 1,900 ms: the median falls in [750, 1000), the 95th in [1500, 2000).
    assert 750 <= health["up/gpt-4o"].latency_p50 <= 1_000
    assert 1_500 <= health["up/gpt-4o"].latency_p95 <= 2_000


def test_cap_usage_with_its_month_end_forecast(ledger: Cast) -> None:
    SpendCap.objects.create(team=ledger.acme, limit_usd=Decimal("0.05"))
    SpendCap.objects.create(user=ledger.gina, limit_usd=Decimal(1))
    caps = chart(ledger.mike, "caps").context["caps"]
    assert [usage.cap.team for usage in caps] == [ledger.acme]


def test_a_page_opened_without_a_period_shows_the_period_it_sums_chosen(ledger: Cast) -> None:
    html = page(ledger.olivia).content.decode()
    assert '<option value="30d" selected>Last 30 days</option>' in html


def test_a_calls_record_says_why_its_model_was_chosen(ledger: Cast) -> None:
    trace = {
        "chain": ["zdr/safe", "box/llama"],
        "skipped": [
            {"model": "up/gpt-4o", "reason": "the request holds personal data (email): its provider may keep data"}
        ],
        "routing": {
            "route": "auto",
            "strategy": "rules",
            "reason": "rule 'code' → route coding",
            "inputs": {"rule": "code", "passed_over": []},
            "then": {
                "route": "coding",
                "strategy": "budget",
                "reason": "cheapest → zdr/safe",
                "inputs": {"ceiling_usd": None},
            },
            "sensitivity": {"found": ["email", "national_id"], "tagged": False},
        },
    }
    [record] = book(
        usage_record(at=AN_HOUR_AGO, model="zdr/safe", route="auto", user=ledger.olivia, team=ledger.acme, trace=trace)
    )

    body = (
        logged_in(ledger.olivia).get(reverse("billing-team-record", args=["acme", record.request_id])).content.decode()
    )

    why = body.split('data-testid="trace"')[1].split("</section>")[0]
    assert "Route <code>auto</code>, strategy <strong>rules</strong>: rule &#x27;code&#x27; → route coding" in why
    assert "Route <code>coding</code>, strategy <strong>budget</strong>: cheapest → zdr/safe" in why
    assert "&quot;rule&quot;: &quot;code&quot;" in why
    assert "Personal data found: email, national id. Sent only to providers that keep no data." in why
    assert "<li><code>zdr/safe</code></li><li><code>box/llama</code></li>" in why
    assert "<code>up/gpt-4o</code>: the request holds personal data (email)" in why
    # A call that named its model says so.
    plain = UsageRecord.objects.filter(user=ledger.olivia, trace={}).first()
    assert plain is not None
    body = (
        logged_in(ledger.olivia).get(reverse("billing-team-record", args=["acme", plain.request_id])).content.decode()
    )
    assert "The call named its model: no route chose it." in body


def test_the_admins_record_links_to_the_calls_page(ledger: Cast, admin_client: Client) -> None:
    record = UsageRecord.objects.filter(team=ledger.acme).first()
    assert record is not None
    page = admin_client.get(reverse("admin:billing_usagerecord_change", args=[record.pk])).content.decode()
    assert f'<a href="/calls/{record.request_id}/">the routing trace, on the call\'s page</a>' in page


@pytest.mark.parametrize(
    ("bucket", "starts", "a", "b"),
    [
        ("day", ["2026-11-29", "2026-11-30", "2026-12-01"], [10, 20, 0], [0, 0, 40]),
        ("week", ["2026-11-23", "2026-11-30"], [10, 20], [0, 40]),
        ("month", ["2026-11-01", "2026-12-01"], [30, 0], [0, 40]),
    ],
)
def test_hours_fall_in_their_day_week_and_month(bucket: str, starts: list[str], a: list[int], b: list[int]) -> None:
    def hour(day: int, month: int, at: int) -> dt.datetime:
        return dt.datetime(2026, month, day, at, tzinfo=dt.UTC)

    # A Sunday's last hour, the next Monday's first hours, and a day into December.
    UsageRollup.objects.create(hour=hour(29, 11, 23), model="a", input_tokens=10)
    UsageRollup.objects.create(hour=hour(30, 11, 0), model="a", input_tokens=20)
    UsageRollup.objects.create(hour=hour(1, 12, 5), model="b", input_tokens=40)
    series = over_time(
        [UsageRollup.objects.all()],
        since=hour(29, 11, 0),
        until=hour(2, 12, 0),
        bucket=bucket,
        stack="model",
        metric="tokens",
    )
    assert [start.date().isoformat() for start in series.buckets] == starts
    assert series.values["a"] == a
    assert series.values.get("b", [0] * len(starts)) == b
