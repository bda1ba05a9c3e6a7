"""The run form: every refusal is a message on the form, with nothing run and nothing booked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.models import RateLimit, SpendCap, UsageRecord
from billing.ratelimits.config import rate_limits_publish
from playground.models import PlaygroundRun, RunPanel
from routing.models import Route

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sim")]

PROMPT = "Explain how tides work."
HTMX = {"HTTP_HX_REQUEST": "true"}


def post(client: Client, *, htmx: bool = False, **data: Any) -> Any:
    return client.post("/playground/", {"prompt": PROMPT, **data}, **(HTMX if htmx else {}))


def assert_refused(response: Any, message: str, callbacks: list[Callable[[], None]]) -> None:
    assert response.status_code == 200
    assert message in response.content.decode()
    assert PlaygroundRun.objects.count() == 0
    assert RunPanel.objects.count() == 0
    assert UsageRecord.objects.count() == 0
    assert callbacks == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prompt": "   \n ", "models": ["sim/quick", "sim/paced"]}, "Write a prompt first."),
        ({}, "Choose 2 to 6 models or routes to compare."),
        ({"models": ["sim/quick"]}, "Choose at least one more model or route"),
        (
            {"models": ["sim/quick", "sim/paced", "sim/steady", "sim/long", "sim/slow", "sim/slower", "fallback"]},
            "Choose at most 6 models or routes (you chose 7).",
        ),
        ({"models": ["sim/quick", "sim/off"]}, "sim/off is disabled: choose another model."),
        ({"models": ["sim/quick", "nope/nothing"]}, "nope/nothing is not a model or route of this Switchyard."),
        ({"models": ["sim/quick", "closed"]}, "The route closed is disabled: choose another."),
        ({"models": ["sim/quick", "sim/paced"], "temperature": "3"}, "Ensure this value is less than or equal to 2"),
        ({"models": ["sim/quick", "sim/paced"], "max_tokens": "0"}, "Ensure this value is greater than or equal to 1"),
    ],
    ids=[
        "empty-prompt",
        "no-model",
        "one-model",
        "seven-models",
        "disabled",
        "unknown",
        "disabled-route",
        "temperature",
        "max-tokens",
    ],
)
def test_it_refuses_bad_input_with_a_message_and_runs_nothing(
    alice_client: Client, django_capture_on_commit_callbacks: Any, data: dict[str, Any], message: str
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(alice_client, **data)
    assert_refused(response, message, callbacks)


def test_it_refuses_a_prompt_beyond_the_smallest_chosen_context_window(
    alice_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    prompt = "Summarise this: " + "the quick brown fox jumps over the lazy dog " * 20
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(alice_client, prompt=prompt, models=["sim/quick", "sim/small"])
    assert_refused(response, "more than sim/small can take (60 tokens)", callbacks)


def test_a_route_counts_with_the_largest_window_of_its_chain(alice_client: Client, sim: dict[str, Any]) -> None:
    sim["paced"].context_window = 40
    sim["paced"].save()
    response = post(alice_client, prompt="word " * 45, models=["fallback", "sim/quick"])
    assert response.status_code == 302


def test_it_refuses_a_user_over_the_spend_cap(
    alice_client: Client, cast: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    SpendCap.objects.create(user=cast["alice"], limit_usd=Decimal("0.01"), period=SpendCap.Period.DAY)
    UsageRecord.objects.create(
        request_id="earlier-call",
        created_at=timezone.now() - dt.timedelta(minutes=5),
        user=cast["alice"],
        requested="sim/quick",
        model="sim/quick",
        status=UsageRecord.Status.OK,
        cost_usd=Decimal("0.02"),
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(alice_client, models=["sim/quick", "sim/paced"])
    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing was run:" in page and "daily cap of $0.01 is used up" in page
    assert PlaygroundRun.objects.count() == 0
    assert UsageRecord.objects.count() == 1
    assert callbacks == []


def test_a_run_over_the_users_rate_limit_is_refused_in_words(
    alice_client: Client, cast: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    # Each column is a request: a two-column run needs 2 of the minute's 3.
    RateLimit.objects.create(user=cast["alice"], requests_per_minute=3)
    # As the commit of the admin's change would (this test's transaction never commits).
    rate_limits_publish()
    try:
        post(alice_client, models=["sim/quick", "sim/paced"])
        PlaygroundRun.objects.all().delete()
        with django_capture_on_commit_callbacks() as callbacks:
            response = post(alice_client, models=["sim/quick", "sim/paced"])
        page = response.content.decode()
        assert "Nothing was run: Rate limit reached for the user: 3 requests per minute. Please try again in" in page
        assert PlaygroundRun.objects.count() == 0 and callbacks == []
    finally:
        RateLimit.objects.all().delete()
        rate_limits_publish()


def test_an_htmx_refusal_comes_back_as_the_form_in_place_of_the_form(alice_client: Client) -> None:
    response = post(alice_client, htmx=True, models=["sim/quick"])
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#run-form"
    assert response["HX-Reswap"] == "outerHTML"
    page = response.content.decode()
    assert page.lstrip().startswith("<form") and "Choose at least one more model or route" in page
    assert PROMPT in page


def test_a_run_makes_one_panel_per_choice_and_sends_the_calls_only_after_commit(
    alice_client: Client, cast: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(
            alice_client, models=["sim/paced", "fallback", "sim/quick"], temperature="0.4", max_tokens="200"
        )
    run = PlaygroundRun.objects.get()
    assert response.status_code == 302 and response.url == f"/playground/runs/{run.pk}/"
    assert [(p.position, p.requested, p.label) for p in run.panels.all()] == [
        (0, "sim/paced", ""),
        (1, "fallback", ""),
        (2, "sim/quick", ""),
    ]
    assert all(p.status == RunPanel.Status.RUNNING and p.call_id.startswith("pg-") for p in run.panels.all())
    assert (run.user, run.team, run.temperature, run.max_tokens, run.blind) == (
        cast["alice"],
        cast["acme"],
        0.4,
        200,
        False,
    )
    # The run's calls, handed over on commit, none before.
    assert len(callbacks) == 1
    [specs] = callbacks[0].args
    assert [spec.call_id for spec in specs] == [p.call_id for p in run.panels.all()]
    assert UsageRecord.objects.count() == 0


def test_a_user_in_no_team_runs_without_a_team(cast: dict[str, Any]) -> None:
    client = Client()
    client.force_login(cast["carol"])
    post(client, models=["sim/paced", "sim/quick"])
    assert PlaygroundRun.objects.get().team is None


def test_a_blind_run_labels_its_columns_and_keeps_every_choice(alice_client: Client) -> None:
    chosen = ["sim/paced", "sim/quick", "sim/steady", "fallback"]
    post(alice_client, models=chosen, blind="on")
    panels = list(PlaygroundRun.objects.get(blind=True).panels.all())
    assert [p.label for p in panels] == ["Model A", "Model B", "Model C", "Model D"]
    assert sorted(p.requested for p in panels) == sorted(chosen)


def test_the_category_is_the_users_choice_or_else_the_classifiers(alice_client: Client) -> None:
    post(alice_client, prompt="Why is the sky blue?", models=["sim/paced", "sim/quick"], category="writing")
    post(alice_client, prompt="Write a Python function that reverses a linked list.", models=["sim/paced", "sim/quick"])
    assert [r.category for r in PlaygroundRun.objects.order_by("created_at")] == ["writing", "coding"]


def test_an_htmx_run_answers_with_its_columns_listening_to_one_stream(alice_client: Client) -> None:
    response = post(alice_client, htmx=True, models=["sim/paced", "sim/quick"])
    run = PlaygroundRun.objects.get()
    page = response.content.decode()
    assert page.count("sse-connect=") == 1
    assert f'sse-connect="/playground/runs/{run.pk}/events/"' in page and 'sse-close="done"' in page
    for position in (0, 1):
        assert f'sse-swap="text-{position}" hx-swap="innerHTML"' in page
        assert f'sse-swap="final-{position}"' in page
        assert f'sse-swap="done-{position},error-{position}"' in page


def test_a_route_column_names_its_strategys_reason_in_one_line(alice_client: Client) -> None:
    route = Route.objects.get(name="fallback")
    route.strategy = "rules"
    route.settings = {"rules": [{"name": "tides", "when": {"keywords": ["tides"]}, "to": "sim/quick"}]}
    route.full_clean()
    route.save()
    response = post(alice_client, htmx=True, prompt="Explain tides.", models=["fallback", "sim/paced"])
    page = response.content.decode()
    assert (
        '<p class="pg-reason small muted" data-testid="route-reason">fallback: rule &#x27;tides&#x27; → sim/quick</p>'
        in page
    )
    assert page.count('data-testid="route-reason"') == 1


def test_the_picker_lists_enabled_models_and_routes_with_prices_and_chains(alice_client: Client) -> None:
    page = alice_client.get("/playground/").content.decode()
    assert 'value="sim/paced"' in page and 'value="fallback"' in page
    assert 'value="sim/off"' not in page and 'value="closed"' not in page
    assert "$1.00" in page and "$4.00" in page
    assert "<code>sim/broken</code></li><li><code>sim/paced</code>" in page


def test_the_estimate_prices_the_prompt_and_the_answers(alice_client: Client) -> None:
    response = alice_client.post(
        "/playground/estimate/",
        {"prompt": PROMPT, "models": ["sim/paced", "fallback"], "max_tokens": "1000"},
        **HTMX,
    )
    page = response.content.decode()
    # 12 prompt tokens (with the chat framing) at $1/1M for 2 models; 1000 answer tokens at $4/1M each.
    assert "≈ 12 tokens × 2" in page
    assert "$0.000024 for the prompt" in page
    assert "$0.008 for answers of at most 1000 tokens each" in page
    assert "≈ $0.008024" in page


def test_the_estimate_flags_a_prompt_too_long_for_a_model(alice_client: Client) -> None:
    response = alice_client.post("/playground/estimate/", {"prompt": "word " * 80, "models": ["sim/small"]}, **HTMX)
    assert "Too long for sim/small." in response.content.decode()
