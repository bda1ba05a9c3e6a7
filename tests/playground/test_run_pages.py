"""A saved run: its page, the history, "run again", and who may see them."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from playground.models import PlaygroundRun, RunPanel
from tests.usage_ledger import book, usage_record

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sim")]


def finished_run(user: Any, **fields: Any) -> PlaygroundRun:
    run = PlaygroundRun.objects.create(
        user=user,
        prompt="Explain how tides work.",
        system_prompt="Be brief.",
        temperature=0.3,
        max_tokens=300,
        category="reasoning",
        **fields,
    )
    RunPanel.objects.create(
        run=run,
        position=0,
        requested="sim/paced",
        call_id=f"pg-{uuid.uuid4().hex}",
        status=RunPanel.Status.OK,
        model="sim/paced",
        output="The **Moon** pulls the sea.\n\n```python\nprint('<tide>')\n```",
        input_tokens=12,
        output_tokens=48,
        cost_usd=Decimal("0.000204"),
        ttft_ms=120,
        latency_ms=1320,
        label="Model A" if run.blind else "",
    )
    RunPanel.objects.create(
        run=run,
        position=1,
        requested="fallback",
        call_id=f"pg-{uuid.uuid4().hex}",
        status=RunPanel.Status.ERROR,
        error_kind="rate_limited",
        error_message="Slow down.",
        label="Model B" if run.blind else "",
        attempts=[
            {"model": "sim/broken", "provider": "sim", "outcome": "unavailable", "status_code": 500, "elapsed_ms": 40},
            {"model": "sim/paced", "provider": "sim", "outcome": "rate_limited", "status_code": 429},
        ],
    )
    return run


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_finished_run_shows_its_answers_and_figures_without_streaming(cast: dict[str, Any]) -> None:
    run = finished_run(cast["alice"])
    page = client_for(cast["alice"]).get(f"/playground/runs/{run.pk}/").content.decode()
    assert "sse-connect" not in page
    assert "The <strong>Moon</strong> pulls the sea." in page
    assert "print(&#x27;&lt;tide&gt;&#x27;)" in page and 'class="copy-code"' in page
    for figure in ("0.12 s", "1.32 s", "12 / 48", "40 tok/s", "$0.000204"):
        assert figure in page
    assert "<strong>Failed:</strong> rate limited by the provider" in page
    assert "sim/broken: provider unavailable (HTTP 500, after 0.04 s)" in page
    assert "sim/paced: rate limited by the provider (HTTP 429)" in page
    assert "Total cost <strong data-pg-total>$0.000204</strong>" in page
    assert f'href="/playground/?again={run.pk}"' in page


def test_a_route_column_stopped_while_its_second_model_answered_lists_only_the_first_as_tried(
    cast: dict[str, Any],
) -> None:
    run = finished_run(cast["alice"])
    RunPanel.objects.filter(run=run, position=1).update(
        status=RunPanel.Status.CANCELLED,
        model="sim/paced",
        output="The tide",
        error_kind="",
        attempts=[
            {"model": "sim/broken", "provider": "sim", "outcome": "unavailable", "status_code": 500},
            {"model": "sim/paced", "provider": "sim", "outcome": "cancelled", "elapsed_ms": 900},
        ],
    )
    page = client_for(cast["alice"]).get(f"/playground/runs/{run.pk}/").content.decode()
    tried = page.split("Before it, the route tried:")[1].split("</ul>")[0]
    assert "sim/broken: provider unavailable (HTTP 500)" in tried
    assert "sim/paced" not in tried
    assert "Answered by <code>sim/paced</code>" in page


def test_a_blind_run_hides_the_names_until_its_vote(cast: dict[str, Any]) -> None:
    run = finished_run(cast["alice"], blind=True)
    page = client_for(cast["alice"]).get(f"/playground/runs/{run.pk}/").content.decode()
    titles = page.split('class="pg-panel-title">')[1:]
    assert [t.split("</h3>")[0].strip() for t in titles] == ["Model A", "Model B"]
    assert "Answered by" not in page and "sim/broken" not in page
    assert 'data-testid="vote-best-A"' in page


def test_run_again_fills_the_form_with_the_prompt_parameters_and_models(cast: dict[str, Any]) -> None:
    run = finished_run(cast["alice"])
    page = client_for(cast["alice"]).get(f"/playground/?again={run.pk}").content.decode()
    assert ">Explain how tides work.</textarea>" in page and ">Be brief.</textarea>" in page
    assert 'name="temperature" min="0" max="2" step="0.1" placeholder="default" class="pg-input" value="0.3"' in page
    assert 'value="300"' in page and '<option value="reasoning" selected>' in page
    assert 'value="sim/paced" checked' in page and 'value="fallback" checked' in page
    assert 'value="sim/quick" checked' not in page


def test_the_history_lists_only_the_users_own_runs_with_their_totals(cast: dict[str, Any]) -> None:
    finished_run(cast["alice"])
    bobs = finished_run(cast["bob"])
    bobs.prompt = "Bob's secret prompt"
    bobs.save()
    page = client_for(cast["alice"]).get("/playground/runs/").content.decode()
    assert "Explain how tides work." in page and "$0.000204" in page
    assert '<code class="pg-history-model">sim/paced</code><code class="pg-history-model">fallback</code>' in page
    assert "Bob&#x27;s secret prompt" not in page


@pytest.mark.parametrize("viewer", ["bob", "carol"], ids=["teammate", "stranger"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/playground/runs/{id}/"),
        ("get", "/playground/runs/{id}/events/"),
        ("post", "/playground/runs/{id}/stop/"),
        ("get", "/playground/?again={id}"),
    ],
    ids=["page", "events", "stop", "again"],
)
def test_another_users_run_is_a_404(cast: dict[str, Any], viewer: str, method: str, path: str) -> None:
    run = finished_run(cast["alice"])
    response = getattr(client_for(cast[viewer]), method)(path.format(id=run.pk))
    assert response.status_code == 404


def test_an_unknown_or_malformed_run_id_is_a_404(cast: dict[str, Any]) -> None:
    client = client_for(cast["alice"])
    assert client.get(f"/playground/runs/{uuid.uuid4()}/").status_code == 404
    assert client.get("/playground/?again=not-a-uuid").status_code == 404


@pytest.mark.parametrize("path", ["/playground/", "/playground/runs/", f"/playground/runs/{uuid.uuid4()}/events/"])
def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and response.url.startswith("/accounts/login/?next=")


def test_the_site_links_to_the_playground(cast: dict[str, Any]) -> None:
    client = client_for(cast["alice"])
    home = client.get("/").content.decode()
    assert 'href="/playground/"' in home and "Open the playground" in home
    page = client.get("/playground/").content.decode()
    assert '<a href="/playground/" aria-current="page">Playground</a>' in page


def test_a_team_runs_columns_link_to_their_calls_records(cast: dict[str, Any]) -> None:
    run = finished_run(cast["alice"], team=cast["acme"])
    ok = run.panels.get(position=0)
    book(
        usage_record(at=run.created_at, request_id=ok.call_id, model="sim/paced", user=cast["alice"], team=cast["acme"])
    )
    client = client_for(cast["alice"])
    page = client.get(f"/playground/runs/{run.pk}/").content.decode()
    assert page.count('data-testid="call-record"') == 2
    assert f'href="/calls/{ok.call_id}/"' in page

    landed = client.get(f"/calls/{ok.call_id}/")
    assert landed.status_code == 302 and landed.url == f"/teams/acme/records/{ok.call_id}/"
    assert 'data-testid="trace"' in client.get(landed.url).content.decode()
    # Another user, or a call that was never booked: no such call.
    assert client_for(cast["carol"]).get(f"/calls/{ok.call_id}/").status_code == 404
    assert client.get("/calls/chatcmpl-unknown/").status_code == 404
    # A personal run's columns have no team page to link to.
    personal = finished_run(cast["alice"]).pk
    assert 'data-testid="call-record"' not in client.get(f"/playground/runs/{personal}/").content.decode()
