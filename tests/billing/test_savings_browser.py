"""The savings tab in a real headless Chromium, under the site's Content-Security-Policy.

Needs Debian's `chromium`, as tests/playground/test_browser.py does;
without it these tests are skipped, and say so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.money_ledger import Ledger, ledger_create
from tests.playground import conftest as playground
from tests.playground.browser import signed_in_page, skip_without_chromium

skip_without_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

browser = playground.browser


@pytest.fixture
def page(browser: Browser, gateway_url: str) -> Iterator[Page]:
    """Olivia's page (the owner of Acme, tests/money_ledger.py), failing the test on any script error."""
    ledger: Ledger = ledger_create()
    with signed_in_page(browser, gateway_url, ledger.olivia) as page:
        yield page


def test_choosing_another_model_changes_the_figures_without_reloading_the_page(page: Page) -> None:
    page.goto("/teams/acme/")
    page.get_by_test_id("tab-savings").click()
    page.wait_for_url("**/teams/acme/savings/**")
    # The dearest model that answered, up/big, by default: the figures of tests/billing/test_savings.py.
    expect(page.get_by_test_id("savings-model")).to_have_text("up/big")
    expect(page.get_by_test_id("savings-replayed")).to_have_text("$0.1439")
    page.wait_for_selector("[data-testid=figure-replay] .plotly-graph-div .main-svg")
    page.evaluate("window.notReloaded = true")

    page.locator("select[name=compare]").select_option("up/small")

    page.wait_for_url("**compare=up%2Fsmall*")
    expect(page.get_by_test_id("savings-model")).to_have_text("up/small")
    expect(page.get_by_test_id("savings-replayed")).to_have_text("$0.006")
    expect(page.get_by_test_id("savings-calls")).to_have_text("2")
    expect(page.locator("[data-testid=savings-apart] li").first).to_have_attribute("data-calls", "3")
    page.wait_for_selector("[data-testid=figure-replay] .plotly-graph-div .main-svg")
    assert page.evaluate("window.notReloaded") is True

    # A filter change keeps the chosen model.
    page.locator("select[name=period]").select_option("7d")
    page.wait_for_url("**period=7d*")
    expect(page.get_by_test_id("savings-model")).to_have_text("up/small")
    expect(page.get_by_test_id("savings-calls")).to_have_text("1")
    assert page.evaluate("window.notReloaded") is True
