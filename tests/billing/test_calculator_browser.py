"""The cost calculator in a real headless Chromium, under the site's Content-Security-Policy.

Needs Debian's `chromium`, as tests/playground/test_browser.py does;
without it these tests are skipped, and say so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from billing.models import Team, TeamMembership
from tests.playground import conftest as playground
from tests.playground.browser import signed_in_page, skip_without_chromium
from tests.usage_ledger import book, usage_record

skip_without_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

browser = playground.browser

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def owner(registry: dict[str, Any]) -> Any:
    """The owner of Acme, whose last 30 days are 3 calls through "auto" and 2 to up2/gpt-4o asked directly."""
    olivia = get_user_model().objects.create_user("olivia")
    acme = Team.objects.create(name="Acme", slug="acme")
    TeamMembership.objects.create(team=acme, user=olivia, role=TeamMembership.Role.OWNER)
    mine = {"user": olivia, "team": acme}
    book(
        *(usage_record(at=NOW - dt.timedelta(days=d), model="up/gpt-4o-mini", route="auto", **mine) for d in (1, 2, 3)),
        *(usage_record(at=NOW - dt.timedelta(days=d), model="up2/gpt-4o", **mine) for d in (4, 5)),
    )
    return olivia


@pytest.fixture
def page(browser: Browser, gateway_url: str, owner: Any) -> Iterator[Page]:
    with signed_in_page(browser, gateway_url, owner) as page:
        yield page


def test_a_row_typed_in_is_priced_and_the_fill_brings_the_last_30_days_without_a_reload(page: Page) -> None:
    page.goto("/teams/acme/")
    page.get_by_test_id("tab-calculator").click()
    page.wait_for_url("**/teams/acme/calculator/")
    page.evaluate("window.notReloaded = true")

    first = page.get_by_test_id("calc-row").first
    first.locator("input[name$=task]").fill("chat")
    first.locator("select[name$=target]").select_option("up/gpt-4o-mini")
    first.locator("input[name$=requests]").fill("1000000")
    first.locator("input[name$=input_tokens]").fill("1000")
    first.locator("input[name$=output_tokens]").fill("500")
    # A million calls of 1,000 tokens in at $0.15 and 500 out at $0.60 per million: $150 + $300.
    expect(page.get_by_test_id("row-monthly")).to_have_text("$450.00")
    expect(page.get_by_test_id("row-yearly")).to_have_text("$5,400.00")
    # Against the dearest model, up2/gpt-4o: $2,500 + $5,000 a month.
    expect(page.get_by_test_id("row-compared")).to_have_text("$7,500.00")
    expect(page.get_by_test_id("total-saving")).to_have_text("+$7,050.00")
    # The typed field keeps its focus: only the figures were redrawn.
    assert page.evaluate("document.activeElement.name") == "rows-0-output_tokens"
    assert "rows-0-requests=1000000" in page.url

    page.get_by_test_id("calc-fill").click()
    expect(page.get_by_test_id("calc-row")).to_have_count(2)
    expect(page.locator("input[name=rows-0-task]")).to_have_value("auto")
    expect(page.locator("input[name=rows-0-requests]")).to_have_value("3")
    expect(page.locator("input[name=rows-1-task]")).to_have_value("up2/gpt-4o")
    expect(page.get_by_test_id("calc-fill-note")).to_contain_text("5 calls")
    expect(page.get_by_test_id("calc-figure")).to_have_count(2)
    assert "action=" not in page.url and "rows-1-target=up2%2Fgpt-4o" in page.url
    assert page.evaluate("window.notReloaded") is True
