"""A team's overview in a real headless Chromium, under the site's Content-Security-Policy.

Needs Debian's `chromium`, as tests/playground/test_browser.py does;
without it these tests are skipped, and say so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from billing.models import SpendCap, Team, TeamMembership
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
    """The owner of Acme, whose calls of the last 3 days are mini's and of 20 days ago gpt-4o's."""
    olivia = get_user_model().objects.create_user("olivia")
    acme = Team.objects.create(name="Acme", slug="acme")
    TeamMembership.objects.create(team=acme, user=olivia, role=TeamMembership.Role.OWNER)
    key, _ = api_key_create(user=olivia, name="ci", team=acme)
    SpendCap.objects.create(team=acme, limit_usd=Decimal(5))
    book(
        *(
            usage_record(
                at=NOW - dt.timedelta(days=d, minutes=5),
                model="up/mini",
                route="cheap",
                user=olivia,
                team=acme,
                api_key=key,
            )
            for d in range(3)
        ),
        *(
            usage_record(
                at=NOW - dt.timedelta(days=20, minutes=n),
                model="up/gpt-4o",
                route="auto",
                user=olivia,
                team=acme,
                api_key=key,
                input_price_per_million=Decimal("2.5"),
                output_price_per_million=Decimal(10),
            )
            for n in range(4)
        ),
    )
    return olivia


@pytest.fixture
def page(browser: Browser, gateway_url: str, owner: Any) -> Iterator[Page]:
    """The owner's page at 1400×900, failing the test on any script error or refused resource."""
    with signed_in_page(browser, gateway_url, owner) as page:
        yield page


def legend(page: Page, chart: str) -> list[str]:
    """The names in a drawn chart's legend (plotly.js draws one per stacked series)."""
    page.wait_for_selector(f"#chart-{chart} .plotly-graph-div .main-svg")
    return sorted(page.locator(f"#chart-{chart} .legend .legendtext").all_text_contents())


def test_changing_a_filter_redraws_the_charts_without_reloading_the_page(page: Page) -> None:
    page.goto("/teams/acme/")
    assert page.get_by_test_id("total-requests").inner_text() == "7"
    assert legend(page, "spend") == ["up/gpt-4o", "up/mini"]
    page.wait_for_selector("#chart-caps [data-testid=cap-list]")
    page.evaluate("window.notReloaded = true")

    page.locator("select[name=period]").select_option("7d")

    page.wait_for_url("**/teams/acme/?period=7d*")
    expect(page.get_by_test_id("total-requests")).to_have_text("3")
    expect(page.locator("#chart-spend .legendtext")).to_have_text(["up/mini"])
    page.locator("select[name=stack]").select_option("route")
    page.wait_for_url("**stack=route*")
    expect(page.locator("#chart-spend .legendtext")).to_have_text(["cheap"])
    assert page.evaluate("window.notReloaded") is True

    # The address is shareable: opened afresh it shows the same view.
    page.goto(page.url)
    assert page.locator("select[name=stack]").input_value() == "route"
    assert page.get_by_test_id("total-requests").inner_text() == "3"


def test_the_most_expensive_calls_link_to_their_records(page: Page) -> None:
    page.goto("/teams/acme/")
    page.locator("[data-testid=expensive-calls] tbody a").first.click()
    page.wait_for_selector("[data-testid=record]")
    assert page.get_by_test_id("record-cost").inner_text() == "$0.0075"
