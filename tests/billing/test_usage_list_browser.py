"""A team's usage list in a real headless Chromium: filter, page by key, download the CSV.

Needs Debian's `chromium`, as tests/playground/test_browser.py does;
without it these tests are skipped, and say so.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from billing.models import Team, TeamMembership
from billing.services import api_key_create
from tests.playground import conftest as playground
from tests.playground.browser import signed_in_page, skip_without_chromium
from tests.usage_ledger import book, usage_record

skip_without_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

browser = playground.browser

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def owner() -> Any:
    """The owner of Acme: 55 calls of mini, one an hour back to 55 hours ago, and 5 of gpt-4o 20 days ago.

    No call is 23 hours old: "last 24 hours" is whole UTC hours, so that call would fall in or out of it
    depending on whether an hour turns between this module's import and the test.
    """
    olivia = get_user_model().objects.create_user("olivia")
    acme = Team.objects.create(name="Acme", slug="acme")
    TeamMembership.objects.create(team=acme, user=olivia, role=TeamMembership.Role.OWNER)
    key, _ = api_key_create(user=olivia, name="ci", team=acme)
    mine = {"user": olivia, "team": acme, "api_key": key}
    book(
        *(
            usage_record(at=NOW - dt.timedelta(hours=n), model="up/mini", route="cheap", **mine)
            for n in (*range(23), *range(24, 56))
        ),
        *(
            usage_record(
                at=NOW - dt.timedelta(days=20, minutes=n),
                model="up/gpt-4o",
                input_price_per_million=Decimal("2.5"),
                output_price_per_million=Decimal(10),
                **mine,
            )
            for n in range(5)
        ),
    )
    return olivia


@pytest.fixture
def page(browser: Browser, gateway_url: str, owner: Any) -> Iterator[Page]:
    with signed_in_page(browser, gateway_url, owner) as page:
        yield page


def rows(page: Page) -> Any:
    return page.locator("[data-testid=usage-list] tbody tr")


def test_the_list_filters_pages_and_downloads_its_csv_without_reloading(page: Page, tmp_path: Path) -> None:
    page.goto("/teams/acme/")
    page.get_by_test_id("tab-usage").click()
    page.wait_for_url("**/teams/acme/usage/*")
    expect(rows(page)).to_have_count(50)
    page.evaluate("window.notReloaded = true")

    page.get_by_test_id("page-older").click()
    expect(rows(page)).to_have_count(10)
    page.wait_for_url("**after=*")
    assert rows(page).locator("code").all_text_contents()[-5:] == ["up/gpt-4o"] * 5

    page.locator("select[name=period]").select_option("7d")
    page.wait_for_url("**period=7d*")
    expect(rows(page)).to_have_count(50)
    assert "after=" not in page.url  # a new filter starts at the newest call
    page.get_by_test_id("page-older").click()
    expect(rows(page)).to_have_count(5)
    page.get_by_test_id("page-newer").click()
    expect(rows(page)).to_have_count(50)
    assert page.evaluate("window.notReloaded") is True

    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    saved = tmp_path / "usage.csv"
    download.value.save_as(saved)
    exported = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert len(exported) == 55
    assert {row["model"] for row in exported} == {"up/mini"}
    assert {row["input_price_per_million"] for row in exported} == {"1.000000"}

    # Each row leads to its call's record.
    rows(page).first.locator("a").click()
    page.wait_for_selector("[data-testid=record]")
    assert page.get_by_test_id("record-cost").inner_text() == "$0.003"


def test_the_personal_page_lists_ones_own_calls_and_filters_them(page: Page) -> None:
    page.goto("/")
    page.get_by_role("link", name="Your usage").click()
    page.wait_for_url("**/me/")
    expect(rows(page)).to_have_count(50)
    assert page.get_by_test_id("total-requests").inner_text() == "60"
    expect(page.locator("[data-testid=my-keys] tbody tr")).to_have_count(1)

    page.locator("select[name=period]").select_option("24h")
    page.wait_for_url("**/me/?period=24h*")
    expect(page.get_by_test_id("total-requests")).to_have_text("23")
    expect(rows(page)).to_have_count(23)
    expect(page.get_by_test_id("page-older")).to_have_count(0)
