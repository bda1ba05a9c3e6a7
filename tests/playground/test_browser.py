"""The playground in a real headless Chromium, against the site under uvicorn and a real Celery worker.

Needs Debian's `chromium` (installed by `make test` when it runs as root);
without it these tests are skipped, and say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from routing.models import LanguageModel, ModelPrice, Provider
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Reply
from tests.playground.browser import PASSWORD, skip_without_chromium

skip_without_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

NASTY = "<img src=x onerror=window.__xss=1>"
SCRIPT = "<script>window.__xss=2</script>"


@pytest.fixture
def page(
    browser: Browser, gateway_url: str, celery_worker: Any, sim: dict[str, Any], cast: dict[str, Any], settings: Any
) -> Iterator[Page]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice = get_user_model().objects.get(username="alice")
    alice.set_password(PASSWORD)
    alice.save()
    context = browser.new_context(base_url=gateway_url, viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == []


def log_in(page: Page) -> None:
    page.goto("/playground/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url("**/playground/")


def choose(page: Page, prompt: str, *models: str) -> None:
    page.fill("textarea[name=prompt]", prompt)
    for model in models:
        page.check(f'input[name=models][value="{model}"]')


# Records, in the page itself, the length of every streaming column after each
# DOM change: polling from the test process can miss the growth altogether on a
# loaded machine, where one round trip takes longer than a column streams.
# Each body element gets a serial number, because the column's end replaces it
# by its rendered twin, which htmx's settling shows with the old classes for a
# moment.
WATCH_STREAMING = """() => {
    window.__growth = [];
    const serials = new WeakMap();
    let bodies = 0;
    const area = document.querySelector('#run-area');
    new MutationObserver(() => {
        area.querySelectorAll('.pg-answer.pg-streaming').forEach((body) => {
            if (!serials.has(body)) serials.set(body, bodies++);
            const column = [...area.querySelectorAll('.pg-answer')].indexOf(body);
            window.__growth.push([column, serials.get(body), body.textContent.length]);
        });
    }).observe(area, {childList: true, subtree: true, characterData: true});
}"""


def test_three_models_stream_side_by_side_and_show_their_figures(page: Page) -> None:
    log_in(page)
    choose(page, "Explain how tides work, step by step.", "sim/walk", "sim/jog", "sim/stroll")
    page.wait_for_selector("#pg-estimate strong")
    page.evaluate(WATCH_STREAMING)
    page.focus("textarea[name=prompt]")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#run-area [data-pg-total]", timeout=20_000)
    growth = page.evaluate("window.__growth")
    for column in range(3):
        # While the column was still streaming, its text was seen at several growing lengths.
        streamed_into = next(serial for index, serial, _ in growth if index == column)
        seen = [length for index, serial, length in growth if serial == streamed_into and length > 0]
        assert len(set(seen)) >= 3, (column, seen)
        assert seen == sorted(seen), (column, seen)
    panels = page.locator("#run-area .pg-panel")
    assert panels.count() == 3
    for column in range(3):
        panel = panels.nth(column)
        assert panel.locator(".pg-answer.pg-rendered").inner_text().strip()
        figures = panel.locator(".pg-figures dd").all_inner_texts()
        assert len(figures) == 5 and figures[0].endswith(" s") and figures[4].startswith("$"), figures
        assert panel.locator(".pg-answered code").inner_text() in ("sim/walk", "sim/jog", "sim/stroll")
    assert page.locator("#run-area [data-pg-total]").inner_text().startswith("$")


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-nasty",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def fake_model(public_id: str, fake_openai: tuple[FakeOpenAI, str]) -> str:
    provider, _ = Provider.objects.get_or_create(
        name="fake", defaults={"kind": Provider.Kind.OPENAI, "base_url": f"{fake_openai[1]}/v1"}
    )
    provider.set_api_key("sk-fake")
    provider.save()
    model = LanguageModel.objects.create(
        public_id=public_id,
        provider=provider,
        upstream_name="gpt-4o-mini",
        context_window=16000,
        max_output_tokens=1000,
    )
    ModelPrice.objects.create(model=model, input_per_million="0.15", output_per_million="0.60")
    return model.public_id


@pytest.fixture
def markdown_model(upstream: FakeOpenAI, fake_openai: tuple[FakeOpenAI, str]) -> str:
    public_id = fake_model("fake/markdown", fake_openai)
    pieces = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Tides have **two** causes:\n\n"}),
        _chunk({"content": "- the Moon\n- the Sun\n\n```py"}),
        _chunk({"content": "thon\nprint('tide')\n"}),
        *[_chunk({"content": " and more"}) for _ in range(8)],
        _chunk({}, finish="stop"),
        b"data: [DONE]\n\n",
    ]
    upstream.queue(Reply(headers=[(b"content-type", b"text/event-stream")], pieces=pieces, chunk_delay=0.4))
    return public_id


def test_an_answer_shows_as_markdown_while_it_streams(page: Page, markdown_model: str) -> None:
    log_in(page)
    choose(page, "Why are there tides?", markdown_model, "sim/quick")
    page.click(".pg-run-button")
    streaming = page.locator("#run-area .pg-panel").first.locator(".pg-answer.pg-streaming")
    # Before the answer ends: bold, a list and a code block still open, never the raw marks.
    expect(streaming.locator("strong")).to_have_text("two", timeout=20_000)
    expect(streaming.locator("li")).to_have_count(2)
    expect(streaming.locator("pre code")).to_contain_text("print('tide')")
    assert "**" not in streaming.inner_text() and "```" not in streaming.inner_text()
    page.wait_for_selector("#run-area [data-pg-total]", timeout=20_000)
    answer = page.locator("#run-area .pg-panel").first.locator(".pg-answer.pg-rendered")
    expect(answer.locator("strong")).to_have_text("two")
    expect(answer.locator(".code-block .code-lang")).to_have_text("python")


@pytest.fixture
def nasty_model(upstream: FakeOpenAI, fake_openai: tuple[FakeOpenAI, str]) -> str:
    public_id = fake_model("fake/echo", fake_openai)
    pieces = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Markup in an answer: "}),
        _chunk({"content": NASTY[:9]}),
        _chunk({"content": NASTY[9:]}),
        _chunk({"content": " and **bold** "}),
        _chunk({"content": SCRIPT}),
        _chunk({}, finish="stop"),
        b"data: [DONE]\n\n",
    ]
    upstream.queue(Reply(headers=[(b"content-type", b"text/event-stream")], pieces=pieces, chunk_delay=0.15))
    return public_id


def test_markup_in_an_answer_is_shown_as_text_and_never_runs(page: Page, nasty_model: str) -> None:
    log_in(page)
    choose(page, "Say something with markup.", nasty_model, "sim/quick")
    page.click(".pg-run-button")
    page.wait_for_selector("#run-area [data-pg-total]", timeout=20_000)
    answer = page.locator("#run-area .pg-panel").first.locator(".pg-answer")
    text = answer.inner_text()
    assert NASTY in text and SCRIPT in text
    assert answer.locator("strong").inner_text() == "bold"
    assert page.locator("#run-area .pg-panel img, #run-area .pg-panel script").count() == 0
    assert page.evaluate("window.__xss") is None
