"""A learned route through /v1: trained from the admin by the real worker; the next trace names the new version."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from routing.catalog import VERSION_KEY
from routing.models import GradedSet, Route, RouterModel, RouterTrainingFailure
from switchyard.redis_clients import get_redis
from tests.graded_csv import STRONG, WEAK, graded_csv
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

HARD = [{"role": "user", "content": "Question 1: what about the eigenvalue number 3?"}]


@pytest.fixture
def learned_route(registry: dict[str, Any]) -> Route:
    route: Route = registry["routes"]["auto"]
    route.strategy = "learned"
    route.settings = {"weak": "up/gpt-4o-mini", "strong": "up2/gpt-4o", "strong_share": 0.5}
    route.full_clean()
    route.save()
    return route


@pytest.fixture
def admin_client(transactional_db: Any) -> Client:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    browser = Client()
    browser.force_login(admin)
    return browser


def _registry_version() -> int:
    return int(get_redis().get(VERSION_KEY) or 0)


def _newest_version(route: Route, at_least: int, *, registry_before: int, timeout: float = 60) -> int:
    """The route's newest model version once it is in the database and the registry's version has moved past it.

    The version moves only after the training's commit (routing/signals.py): from then on every process's next
    call loads the new model.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = RouterModel.objects.filter(route=route, version__gte=at_least).first()
        if newest is not None and _registry_version() > registry_before:
            return newest.version
        time.sleep(0.05)
    raise AssertionError(f"no router model v{at_least} for {route.name} within {timeout} s")


def test_a_retrain_from_the_admin_changes_the_version_the_next_calls_trace_names(
    client: openai.OpenAI, learned_route: Route, admin_client: Client
) -> None:
    upload = SimpleUploadedFile("graded.csv", graded_csv(200, seed=1).encode(), content_type="text/csv")
    added = admin_client.post(
        "/admin/routing/gradedset/add/",
        {"route": learned_route.pk, "name": "graded", "weak_column": WEAK, "strong_column": STRONG, "csv_file": upload},
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    assert GradedSet.objects.get().prompts == 200

    before = client.chat.completions.with_raw_response.create(model="auto", messages=HARD)
    assert before.headers["x-switchyard-route-reason"] == "auto: no model trained yet -> up/gpt-4o-mini"

    page = f"/admin/routing/route/{learned_route.pk}/change/"
    assert "Retrain now" in admin_client.get(page).content.decode()
    registry = _registry_version()
    admin_client.post(page, {"_retrain": "1"})
    assert _newest_version(learned_route, 1, registry_before=registry) == 1

    first = client.chat.completions.with_raw_response.create(model="auto", messages=HARD)
    routing = booked(first.headers["x-request-id"]).trace["routing"]
    assert routing["strategy"] == "learned" and routing["inputs"]["version"] == 1
    assert routing["inputs"]["p_strong_ok"] > routing["inputs"]["p_weak_ok"]
    assert first.headers["x-switchyard-model"] == "up2/gpt-4o"

    registry = _registry_version()
    admin_client.post(page, {"_retrain": "1"})
    assert _newest_version(learned_route, 2, registry_before=registry) == 2

    second = client.chat.completions.with_raw_response.create(model="auto", messages=HARD)
    assert booked(second.headers["x-request-id"]).trace["routing"]["inputs"]["version"] == 2
    assert second.headers["x-switchyard-route-reason"].startswith("auto: model v2: score")


def _failure(route: Route, timeout: float = 60) -> RouterTrainingFailure:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if failure := RouterTrainingFailure.objects.filter(route=route).first():
            return failure
        time.sleep(0.05)
    raise AssertionError(f"no failed training of {route.name} within {timeout} s")


def test_a_failed_retrain_shows_on_the_routes_page_and_the_last_good_version_keeps_routing(
    client: openai.OpenAI, learned_route: Route, admin_client: Client
) -> None:
    graded = GradedSet.objects.create(
        route=learned_route, name="g", weak_column=WEAK, strong_column=STRONG, csv_text=graded_csv(200, seed=1)
    )
    page = f"/admin/routing/route/{learned_route.pk}/change/"
    registry = _registry_version()
    admin_client.post(page, {"_retrain": "1"})
    assert _newest_version(learned_route, 1, registry_before=registry) == 1
    graded.delete()

    admin_client.post(page, {"_retrain": "1"})
    failure = _failure(learned_route)

    shown = admin_client.get(page).content.decode()
    assert f"The last training failed at {failure.failed_at:%Y-%m-%d %H:%M:%S} UTC" in shown
    assert "Too few graded prompts to train on: 0 (at least 10). v1 still routes its calls." in shown
    assert "Retrain now" in shown
    call = client.chat.completions.with_raw_response.create(model="auto", messages=HARD)
    assert booked(call.headers["x-request-id"]).trace["routing"]["inputs"]["version"] == 1
    assert RouterModel.objects.filter(route=learned_route).count() == 1

    GradedSet.objects.create(
        route=learned_route, name="g", weak_column=WEAK, strong_column=STRONG, csv_text=graded_csv(200, seed=1)
    )
    registry = _registry_version()
    admin_client.post(page, {"_retrain": "1"})
    assert _newest_version(learned_route, 2, registry_before=registry) == 2
    assert "The last training failed" not in admin_client.get(page).content.decode()


def test_a_csv_without_the_columns_named_is_a_form_error(learned_route: Route, admin_client: Client) -> None:
    upload = SimpleUploadedFile("graded.csv", b"prompt,mixtral\nhello,True\n", content_type="text/csv")
    page = admin_client.post(
        "/admin/routing/gradedset/add/",
        {
            "route": learned_route.pk,
            "name": "bad",
            "weak_column": "mixtral",
            "strong_column": "gpt-4",
            "csv_file": upload,
        },
    )

    assert page.status_code == 200
    assert "no column &#x27;gpt-4&#x27;" in page.content.decode()
    assert not GradedSet.objects.exists()
