"""The pages in a real headless Chromium under the site's Content-Security-Policy: nothing is refused.

A script, style or handler that the policy refuses is reported to the page as
a `securitypolicyviolation` event and logged to the console; either fails the
test. Needs Debian's `chromium`, as tests/playground/test_browser.py does;
without it these tests are skipped, and say so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from billing.models import ApiKey
from playground.models import Category, PlaygroundRun, RunPanel
from playground.votes import vote_cast
from routing.models import Route
from tests.playground.browser import PASSWORD, skip_without_chromium

skip_without_chromium()

from playwright.sync_api import Browser, Page  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


# Runs in every document before its own scripts, whatever the policy.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
    const where = `${event.sourceFile}:${event.lineNumber}`;
    window.__cspViolation(`${event.effectiveDirective} refused ${event.blockedURI || "?"} (${where})`);
});
"""


@dataclass
class Watched:
    page: Page
    violations: list[str]


@pytest.fixture
def watched(
    browser: Browser, gateway_url: str, celery_worker: Any, sim: dict[str, Any], cast: dict[str, Any], settings: Any
) -> Iterator[Watched]:
    """alice, a superuser, logged in; every CSP violation and page error of the pages she opens is recorded."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice = cast["alice"]
    alice.is_staff = alice.is_superuser = True
    alice.set_password(PASSWORD)
    alice.save()
    context = browser.new_context(base_url=gateway_url, viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway_url)
    violations: list[str] = []
    context.expose_binding("__cspViolation", lambda source, text: violations.append(text))
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login = page.goto("/accounts/login/")
    assert login is not None and "script-src 'self'" in login.headers["content-security-policy"]
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"{gateway_url}/")
    yield Watched(page, violations)
    context.close()
    assert errors == []


def refused(watched: Watched) -> list[str]:
    """The violations so far, once the page has run the tasks that report them."""
    watched.page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 50))")
    return watched.violations


def assert_nothing_refused(watched: Watched) -> None:
    violations = refused(watched)
    assert violations == [], "\n".join(violations)


def test_an_inline_script_is_refused_and_reported(watched: Watched) -> None:
    """The watch works, and the policy is enforced: the other tests' empty lists mean something."""
    watched.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; "
        "document.head.append(s); }"
    )

    assert watched.page.evaluate("window.__ran") is None
    assert any(violation.startswith("script-src-elem refused inline") for violation in refused(watched)), refused(
        watched
    )


def test_the_playground_streams_a_blind_run_and_takes_its_vote_with_nothing_refused(watched: Watched) -> None:
    page = watched.page
    page.goto("/playground/")
    # Model output swapped in never runs a script; htmx neither evals nor adds a <style>.
    config = "[htmx.config.allowScriptTags, htmx.config.allowEval, htmx.config.includeIndicatorStyles]"
    assert page.evaluate(config) == [False, False, False]
    page.fill("textarea[name=prompt]", "Explain how tides work.")
    page.check('input[name=models][value="sim/quick"]')
    page.check('input[name=models][value="sim/paced"]')
    page.locator("input[name=blind]").check(force=True)
    page.click(".pg-run-button")
    page.wait_for_selector("#run-area [data-pg-total]", timeout=20_000)
    run_link = page.locator("#run-area .pg-run-meta a").get_attribute("href")
    # The same run in a second tab, whose vote box will be out of date.
    stale = page.context.new_page()
    stale.goto(str(run_link))
    stale.wait_for_selector('[data-testid="vote-best-A"]')

    page.click('[data-testid="vote-best-A"]')
    page.wait_for_selector('[data-testid="vote-result"]')
    stale.click('[data-testid="vote-best-B"]')

    # Refused with a 400, which the playground's script swaps in like an answer.
    stale.wait_for_selector('[data-testid="vote-error"]')
    assert page.locator('[data-testid^="revealed-"]').count() == 2
    assert_nothing_refused(watched)


def test_the_admin_reorders_a_routes_chain_with_nothing_refused(watched: Watched) -> None:
    page = watched.page
    route = Route.objects.get(name="fallback")
    assert [step.model.public_id for step in route.steps.order_by("position")] == ["sim/broken", "sim/paced"]
    page.goto(f"/admin/routing/route/{route.pk}/change/")

    # django-admin-sortable2's "move to last position" on the first step of the chain.
    page.locator("i.move-end").first.click()
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")

    assert [step.model.public_id for step in route.steps.order_by("position")] == ["sim/paced", "sim/broken"]
    assert_nothing_refused(watched)


def _vote(cast: dict[str, Any], models: list[str], winner: int, category: str) -> None:
    run = PlaygroundRun.objects.create(
        user=cast["alice"], team=cast["acme"], prompt="Hello?", blind=True, category=category
    )
    panels = [
        RunPanel.objects.create(
            run=run, position=position, label=f"Model {chr(65 + position)}", requested=model, model=model,
            status="ok", call_id=uuid.uuid4().hex,
        )
        for position, model in enumerate(models)
    ]  # fmt: skip
    vote_cast(run=run, user=cast["alice"], outcome="best", winner_panel=panels[winner])


def test_the_leaderboard_draws_its_charts_with_nothing_refused(watched: Watched, cast: dict[str, Any]) -> None:
    _vote(cast, ["sim/quick", "sim/paced"], 0, "")
    _vote(cast, ["sim/quick", "sim/paced"], 1, Category.CODING)
    page = watched.page

    page.goto("/playground/leaderboard/")
    page.wait_for_selector("#leaderboard-chart .plotly-graph-div .main-svg")
    assert page.evaluate("[htmx.config.allowScriptTags, htmx.config.inlineScriptNonce.length > 0]") == [True, True]
    # A category tab swaps in a new board, whose chart script runs under the page's nonce.
    page.click('[data-testid="tab-coding"]')
    page.wait_for_selector('#board[data-category="coding"] #leaderboard-chart .plotly-graph-div .main-svg')

    assert_nothing_refused(watched)


def test_a_swapped_in_script_without_the_nonce_of_its_response_is_dropped(watched: Watched) -> None:
    """What lets the leaderboard run swapped-in scripts under its nonce: only those the server marked survive."""
    watched.page.goto("/playground/leaderboard/")

    kept = watched.page.evaluate(
        """() => {
            const detail = {
                xhr: {getResponseHeader: () => "script-src 'self' 'nonce-ours'"},
                serverResponse: '<div id="board"><script nonce="ours">draw()</script>'
                    + '<script>steal()</script><script nonce="theirs">steal()</script></div>',
            };
            document.body.dispatchEvent(new CustomEvent("htmx:beforeSwap", {detail, bubbles: true}));
            return detail.serverResponse;
        }"""
    )

    assert kept == '<div id="board"><script nonce="ours">draw()</script></div>'
    assert_nothing_refused(watched)


def test_a_new_api_key_is_copied_with_nothing_refused(watched: Watched) -> None:
    page = watched.page
    page.goto("/keys/")
    page.fill("#id_name", "laptop")
    page.click("form.keys-form button[type=submit]")
    page.wait_for_selector("#new-key")

    page.click('[data-copy-from="new-key"]')

    page.wait_for_function("() => document.querySelector('[data-copy-from]').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == page.input_value("#new-key")
    assert ApiKey.objects.filter(name="laptop").exists()
    assert_nothing_refused(watched)
