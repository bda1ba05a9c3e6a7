"""The usage lists (a team's, one's own) and their CSV exports: filters, keyset pages, unit prices, access.

The ledger is test_team_dashboard's: team Acme, owner olivia (key "ci") and
member mike (key "mine"); team Globex, member gina; staff sam.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse

from billing.dashboards.usage_list import Cursor, keyset_batches, usage_page
from billing.models import TeamMembership, UsageRecord
from billing.usage_csv import COLUMNS
from tests.billing import test_team_dashboard as dashboard
from tests.billing.test_team_dashboard import AN_HOUR_AGO, NOW, Cast, logged_in
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

cast = dashboard.cast
ledger = dashboard.ledger


def listed(user: Any, query: str = "", slug: str = "acme") -> list[str]:
    response = logged_in(user).get(reverse("billing-team-usage", args=[slug]) + query)
    assert response.status_code == 200
    return [record.request_id for record in response.context["page"].records]


def exported(user: Any, url: str) -> list[dict[str, str]]:
    response = logged_in(user).get(url)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def ids(records: Any) -> list[str]:
    return list(records.order_by("-created_at", "-pk").values_list("request_id", flat=True))


def test_an_owner_lists_every_members_calls_newest_first_and_filters_narrow_them(ledger: Cast) -> None:
    acme_30d = UsageRecord.objects.filter(team=ledger.acme, created_at__gte=NOW - dt.timedelta(days=30))
    assert listed(ledger.olivia) == ids(acme_30d)
    assert len(listed(ledger.olivia)) == 6
    assert listed(ledger.olivia, "?model=up/mini") == ids(acme_30d.filter(model="up/mini"))
    assert listed(ledger.olivia, "?route=auto") == ids(acme_30d.filter(route="auto"))
    assert listed(ledger.olivia, f"?user={ledger.mike.pk}") == ids(acme_30d.filter(user=ledger.mike))
    assert listed(ledger.olivia, f"?key={ledger.ci.pk}") == ids(acme_30d.filter(api_key=ledger.ci))
    assert len(listed(ledger.olivia, "?period=24h")) == 5
    wide = f"?period=custom&since={(NOW - dt.timedelta(days=60)).date()}&until={NOW.date()}"
    assert len(listed(ledger.olivia, wide)) == 7


def test_a_member_lists_their_own_calls_only_and_staff_every_teams(ledger: Cast) -> None:
    mikes = UsageRecord.objects.filter(team=ledger.acme, user=ledger.mike, created_at__gte=NOW - dt.timedelta(days=30))
    assert listed(ledger.mike) == ids(mikes)
    # Another member's calls cannot be asked for by filter either.
    response = logged_in(ledger.mike).get(reverse("billing-team-usage", args=["acme"]) + f"?user={ledger.olivia.pk}")
    assert "page" not in response.context and response.context["form"].errors
    assert len(listed(ledger.staff)) == 6
    assert len(listed(ledger.staff, slug="globex")) == 1
    staffs = exported(ledger.staff, reverse("billing-team-usage-csv", args=["globex"]))
    assert [row["user"] for row in staffs] == ["gina"]


def test_a_team_admin_lists_every_members_calls_as_an_owner_does(ledger: Cast) -> None:
    TeamMembership.objects.filter(team=ledger.acme, user=ledger.mike).update(role=TeamMembership.Role.ADMIN)
    assert listed(ledger.mike) == listed(ledger.olivia)
    assert len(listed(ledger.mike)) == 6


def test_another_teams_list_and_export_are_404(ledger: Cast) -> None:
    for url in (reverse("billing-team-usage", args=["globex"]), reverse("billing-team-usage-csv", args=["globex"])):
        assert logged_in(ledger.mike).get(url).status_code == 404
        assert logged_in(ledger.olivia).get(url).status_code == 404
    assert logged_in(ledger.mike).get(reverse("billing-team-usage", args=["nope"])).status_code == 404


def test_rows_link_their_records_and_flag_unpriced_calls(ledger: Cast) -> None:
    html = logged_in(ledger.mike).get(reverse("billing-team-usage", args=["acme"])).content.decode()
    unpriced = UsageRecord.objects.get(model="local/llama")
    for record in UsageRecord.objects.filter(team=ledger.acme, user=ledger.mike, created_at__gte=AN_HOUR_AGO):
        assert reverse("billing-team-record", args=["acme", record.request_id]) in html
    assert html.count('data-testid="unpriced"') == 1
    assert f'data-request-id="{unpriced.request_id}" class="unpriced"' in html
    # The failed call cost nothing, but it is not unpriced: it is listed at $0.
    assert "$0.00" in html


def test_the_team_page_links_its_list_and_the_nav_links_the_personal_page(ledger: Cast) -> None:
    html = logged_in(ledger.mike).get(reverse("billing-team", args=["acme"]) + "?period=7d").content.decode()
    assert f'href="{reverse("billing-team-usage", args=["acme"])}?period=7d' in html
    assert f'href="{reverse("me")}"' in html


def many_calls(cast: Cast, n: int) -> list[UsageRecord]:
    """n calls of mike's, three at each instant, so that pages split ties of created_at."""
    return book(
        *(
            usage_record(at=NOW - dt.timedelta(minutes=i // 3), user=cast.mike, team=cast.acme, api_key=cast.mine)
            for i in range(n)
        )
    )


def test_keyset_pages_are_disjoint_and_complete_both_ways(cast: Cast) -> None:
    many_calls(cast, 100)
    records = UsageRecord.objects.filter(team=cast.acme)
    everything = ids(records)
    pages = [usage_page(records, size=7)]
    while pages[-1].older is not None and len(pages) < 50:
        pages.append(usage_page(records, after=pages[-1].older, size=7))
    walked = [r.request_id for page in pages for r in page.records]
    assert walked == everything  # complete, disjoint, in order
    assert [len(page.records) for page in pages] == [7] * 14 + [2]
    assert pages[0].newer is None and pages[-1].older is None
    # Back up from the last page: each "newer" page is the page before it.
    for before, page in zip(pages, pages[1:], strict=False):
        assert page.newer is not None
        assert [r.pk for r in usage_page(records, before=page.newer, size=7).records] == [r.pk for r in before.records]


def test_pages_follow_the_cursor_in_the_url_and_a_bad_cursor_is_said_not_a_500(cast: Cast) -> None:
    many_calls(cast, 60)
    client = logged_in(cast.olivia)
    url = reverse("billing-team-usage", args=["acme"])
    first = client.get(url).context["page"]
    second = client.get(f"{url}?after={first.older}").context["page"]
    assert len(first.records) == 50 and len(second.records) == 10
    assert not {r.pk for r in first.records} & {r.pk for r in second.records}
    assert str(Cursor.parse(str(first.older))) == str(first.older)
    for bad in ("x", "12-", "-3", "9" * 30 + "-1", "9" * 18 + "-1"):
        response = client.get(f"{url}?after={bad}")
        assert response.status_code == 200
        assert "Not a page of this list" in response.content.decode()


def test_the_export_batches_by_key_through_every_record(cast: Cast) -> None:
    many_calls(cast, 23)
    records = UsageRecord.objects.filter(team=cast.acme)
    batches = list(keyset_batches(records, ["request_id"], size=5))
    assert [len(batch) for batch in batches] == [5, 5, 5, 5, 3]
    assert [row[0] for batch in batches for row in batch] == ids(records)
    assert [len(b) for b in keyset_batches(records.filter(model="none"), ["request_id"], size=5)] == []


def test_csv_rows_are_the_records_with_the_unit_prices_they_were_booked_at(cast: Cast) -> None:
    cached = usage_record(
        at=AN_HOUR_AGO,
        model="an/claude",
        user=cast.mike,
        team=cast.acme,
        api_key=cast.mine,
        input_tokens=10_000,
        cached_input_tokens=6_000,
        cache_write_tokens=1_000,
        reasoning_tokens=120,
        input_price_per_million=Decimal("3"),
        output_price_per_million=Decimal("15"),
        cached_input_price_per_million=Decimal("0.3"),
        cache_write_price_per_million=Decimal("3.75"),
        cost_usd=Decimal("0.0211500000"),
    )
    unpriced = usage_record(
        at=AN_HOUR_AGO,
        model="local/llama",
        user=cast.olivia,
        team=cast.acme,
        input_price_per_million=None,
        output_price_per_million=None,
        cost_usd=None,
    )
    book(cached, unpriced)
    rows = exported(cast.olivia, reverse("billing-team-usage-csv", args=["acme"]))
    assert list(rows[0]) == [header for header, _ in COLUMNS]
    by_id = {row["request_id"]: row for row in rows}
    assert list(by_id) == ids(UsageRecord.objects.filter(team=cast.acme))
    for record in UsageRecord.objects.filter(team=cast.acme):
        row = by_id[record.request_id]
        for name in (
            "input_price_per_million",
            "output_price_per_million",
            "cached_input_price_per_million",
            "cache_write_price_per_million",
            "cost_usd",
        ):
            value = getattr(record, name)
            assert (Decimal(row[name]) if row[name] else None) == value, name
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
            assert int(row[name]) == getattr(record, name), name
    claude = by_id[cached.request_id]
    assert (claude["cached_input_price_per_million"], claude["cache_write_price_per_million"]) == (
        "0.300000",
        "3.750000",
    )
    assert claude["cost_usd"] == "0.0211500000"
    assert (by_id[unpriced.request_id]["unpriced"], by_id[unpriced.request_id]["cost_usd"]) == ("true", "")
    # A member's export holds their own calls only, filtered as the list is.
    mikes = exported(cast.mike, reverse("billing-team-usage-csv", args=["acme"]) + "?model=an/claude")
    assert [row["request_id"] for row in mikes] == [cached.request_id]


def test_an_export_with_a_bad_filter_is_a_400_that_says_why(ledger: Cast) -> None:
    response = logged_in(ledger.mike).get(reverse("billing-team-usage-csv", args=["acme"]) + "?period=decade")
    assert response.status_code == 400
    assert "decade" in response.content.decode()


def test_under_asgi_the_export_streams_one_batch_at_a_time(cast: Cast) -> None:
    UsageRecord.objects.bulk_create(
        UsageRecord(request_id=f"c-{n}", created_at=AN_HOUR_AGO, requested="auto", status="ok", team=cast.acme)
        for n in range(4_100)
    )
    client = AsyncClient()
    client.force_login(cast.olivia)

    async def export() -> tuple[bool, list[bytes]]:
        response = await client.get(reverse("billing-team-usage-csv", args=["acme"]))
        return response.is_async, [chunk async for chunk in response.streaming_content]

    is_async, chunks = async_to_sync(export)()
    assert is_async
    assert [chunk.count(b"\r\n") for chunk in chunks] == [1, 2_000, 2_000, 100]


def test_the_personal_page_shows_ones_own_spend_keys_and_calls_across_teams(ledger: Cast) -> None:
    teamless = book(usage_record(at=AN_HOUR_AGO, user=ledger.mike, model="up/mini"))[0]
    client = logged_in(ledger.mike)
    response = client.get(reverse("me"))
    assert response.status_code == 200
    mikes = UsageRecord.objects.filter(user=ledger.mike, created_at__gte=NOW - dt.timedelta(days=30))
    assert [r.request_id for r in response.context["page"].records] == ids(mikes)
    # $0.003 × 2 in Acme and $0.003 with no team; the failed and the unpriced calls cost nothing.
    assert response.context["totals"].cost == Decimal("0.009")
    assert response.context["totals"].unpriced == 1
    assert {share.label: share.cost for share in response.context["teams"]} == {
        "Acme": Decimal("0.006"),
        "(no team)": Decimal("0.003"),
    }
    assert [(key.name, share.requests) for key, share in response.context["keys"]] == [("mine", 2)]
    html = response.content.decode()
    assert reverse("call-record", args=[teamless.request_id]) in html
    # The teamless call's record is one's own page; another user's is a 404 there.
    record_url = client.get(reverse("call-record", args=[teamless.request_id]))["Location"]
    assert record_url == reverse("me-record", args=[teamless.request_id])
    assert client.get(record_url).status_code == 200
    assert logged_in(ledger.olivia).get(record_url).status_code == 404
    assert logged_in(ledger.olivia).get(reverse("call-record", args=[teamless.request_id])).status_code == 404


def test_the_personal_export_holds_ones_own_calls_only(ledger: Cast) -> None:
    rows = exported(ledger.mike, reverse("me-usage-csv") + "?period=24h")
    mikes = UsageRecord.objects.filter(user=ledger.mike, created_at__gte=NOW - dt.timedelta(hours=24))
    assert [row["request_id"] for row in rows] == ids(mikes)
    assert {row["user"] for row in rows} == {"mike"}
    # Someone else's key is not a filter one may use.
    response = logged_in(ledger.mike).get(reverse("me-usage-csv") + f"?key={ledger.ci.pk}")
    assert response.status_code == 400


def test_the_personal_page_needs_a_sign_in() -> None:
    from django.test import Client

    response = Client().get(reverse("me"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
