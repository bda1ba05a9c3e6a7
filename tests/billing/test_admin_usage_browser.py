"""The usage ledger's admin page in a real headless Chromium, under the site's Content-Security-Policy.

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

from billing.models import Team, UsageRecord
from billing.services import api_key_create
from tests.playground import conftest as playground
from tests.playground.browser import signed_in_page, skip_without_chromium

skip_without_chromium()

from playwright.sync_api import Browser, Page  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

browser = playground.browser

CHANGELIST = "/admin/billing/usagerecord/"
WHEN = dt.datetime(2026, 11, 30, 23, 59, 58, tzinfo=dt.UTC)


@pytest.fixture
def ledger() -> dict[str, Any]:
    """Records as long as real ones get: 41-character request ids, dated model ids, a team with a long name."""
    users = get_user_model().objects
    team = Team.objects.create(name="Acme Research Laboratories", slug="acme-research")
    carol, dave = users.create_user("carol.fitzgerald"), users.create_user("dave")
    key, _ = api_key_create(user=carol, name="nightly evaluation batch", team=team)
    for n, user in enumerate([carol] * 3 + [dave] * 2):
        UsageRecord.objects.create(
            request_id=f"chatcmpl-{n:032x}",
            created_at=WHEN - dt.timedelta(minutes=n),
            user=user,
            team=team if user == carol else None,
            api_key=key if user == carol else None,
            requested="auto",
            route="auto",
            model="anthropic/claude-3-5-sonnet-20241022",
            provider="anthropic",
            status=UsageRecord.Status.CANCELLED,
            error_kind="insufficient_quota",
            input_tokens=123_456,
            output_tokens=4_567,
            tokens_estimated=True,
            cost_usd=Decimal("0.0212586000"),
            latency_ms=12_345,
            ttft_ms=456,
        )
    return {"carol": carol, "dave": dave}


@pytest.fixture
def page(browser: Browser, gateway_url: str) -> Iterator[Page]:
    """A superuser's page at 1400×900, failing the test on any script error or refused resource."""
    root = get_user_model().objects.create_superuser("root")
    with signed_in_page(browser, gateway_url, root) as page:
        yield page


def listed(page: Page) -> list[str]:
    return page.locator("#result_list tbody .field-call .quiet").all_inner_texts()


def test_choosing_a_user_in_the_filter_lists_only_their_records(page: Page, ledger: dict[str, Any]) -> None:
    page.goto(f"{CHANGELIST}?status=cancelled")
    assert len(listed(page)) == 5

    user_filter = page.locator('details[data-filter-title="user"]')
    user_filter.locator(".select2-selection").click()
    page.locator(".select2-search__field").fill("dav")
    page.locator(".select2-results__option", has_text="dave").click()

    page.wait_for_url(f"**{CHANGELIST}?status=cancelled&user__id__exact={ledger['dave'].pk}")
    assert listed(page) == [f"chatcmpl-{n:032x}" for n in (3, 4)]
    assert user_filter.locator(".select2-selection__rendered").inner_text().strip().endswith("dave")

    # Cleared, the filter is left out of the query (an empty id would be an invalid one).
    user_filter.locator(".select2-selection__clear").click()
    page.wait_for_url(f"**{CHANGELIST}?status=cancelled")
    assert len(listed(page)) == 5


def test_at_1400_px_the_last_column_is_in_sight_beside_the_navigation_and_the_filters(
    page: Page, ledger: dict[str, Any]
) -> None:
    page.goto(CHANGELIST)
    assert page.locator("#nav-sidebar").is_visible() and page.locator("#changelist-filter").is_visible()

    layout = page.evaluate(
        """() => {
            const results = document.querySelector("#changelist .results");
            const last = document.querySelector("#result_list thead th:last-child");
            return {
                lastRight: last.getBoundingClientRect().right,
                resultsRight: results.getBoundingClientRect().right,
                hiddenByScroll: results.scrollWidth - results.clientWidth,
                viewport: window.innerWidth,
                pageScroll: document.documentElement.scrollWidth - window.innerWidth,
            };
        }"""
    )

    assert layout["hiddenByScroll"] == 0 and layout["pageScroll"] == 0, layout
    assert layout["lastRight"] <= layout["resultsRight"] <= layout["viewport"], layout


def test_the_export_link_downloads_the_filtered_list_from_the_real_server(page: Page, ledger: dict[str, Any]) -> None:
    """Over uvicorn, as the site is served: the ASGI path, whose rows stream from the database thread."""
    page.goto(f"{CHANGELIST}?user__id__exact={ledger['dave'].pk}")

    with page.expect_download() as download:
        page.click('[data-testid="export-csv"]')

    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert download.value.suggested_filename.startswith("usage-records-")
    assert rows[0][:3] == ["created_at", "request_id", "user"]
    assert [(row[1], row[2]) for row in rows[1:]] == [(f"chatcmpl-{n:032x}", "dave") for n in (3, 4)]
