from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.templatetags.static import static
from django.test import Client
from django.utils import timezone

from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_url")]

SECRET = "sk-live-do-not-render-7f3a9c"

Registry = dict[str, Provider]


def _price(model: LanguageModel, *, days_ago: int, per_million_in: str, per_million_out: str) -> None:
    ModelPrice.objects.create(
        model=model,
        valid_from=timezone.now() - dt.timedelta(days=days_ago),
        input_per_million=Decimal(per_million_in),
        output_per_million=Decimal(per_million_out),
    )


def _model(public_id: str, provider: Provider, **fields: object) -> LanguageModel:
    defaults: dict[str, object] = {"context_window": 8_000, "max_output_tokens": 1_000}
    return LanguageModel.objects.create(
        public_id=public_id, provider=provider, upstream_name=public_id.split("/")[1], **{**defaults, **fields}
    )


@pytest.fixture
def registry() -> Registry:
    openai = Provider(name="openai", display_name="OpenAI", kind=Provider.Kind.OPENAI, api_key_env="OPENAI_API_KEY")
    openai.set_api_key(SECRET)
    openai.save()
    sim = Provider.objects.create(name="sim", kind=Provider.Kind.SIMULATED)
    Provider.objects.create(name="retired", kind=Provider.Kind.OLLAMA, enabled=False)
    gpt = _model("openai/gpt-4o-mini", openai, context_window=128_000, capabilities=["tools", "json"])
    fast = _model("sim/fast", sim)
    _model("sim/off", sim, enabled=False)
    _price(gpt, days_ago=30, per_million_in="9.99", per_million_out="19.99")
    _price(gpt, days_ago=1, per_million_in="0.15", per_million_out="0.6")
    _price(gpt, days_ago=-10, per_million_in="7.77", per_million_out="8.88")
    _price(fast, days_ago=1, per_million_in="0.075", per_million_out="0")
    route = Route.objects.create(name="auto", description="Cheap first")
    RouteStep.objects.create(route=route, model=fast, position=0)
    RouteStep.objects.create(route=route, model=gpt, position=1)
    Route.objects.create(name="hidden-route", enabled=False)
    return {"openai": openai}


@pytest.fixture
def member_client(client: Client) -> Client:
    user = get_user_model().objects.create_user(username="alice", password="correct horse battery")
    client.force_login(user)
    return client


def test_it_redirects_an_anonymous_visitor_to_the_login_page(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_it_serves_a_styled_login_page_that_loads_the_vendored_htmx(client: Client) -> None:
    response = client.get("/accounts/login/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in html
    assert static("css/switchyard.css") in html
    assert static("vendor/htmx-2.0.11.min.js") in html
    assert static("vendor/htmx-ext-sse-2.2.4.min.js") in html
    assert "//cdn" not in html and "unpkg.com" not in html


def test_it_logs_in_and_lands_on_the_home_page(client: Client) -> None:
    get_user_model().objects.create_user(username="alice", password="correct horse battery")

    response = client.post("/accounts/login/", {"username": "alice", "password": "correct horse battery"})

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_it_lists_enabled_providers_with_their_kind_and_key_status(member_client: Client, registry: Registry) -> None:
    html = member_client.get("/").content.decode()

    assert "OpenAI-compatible" in html
    assert "stored (encrypted)" in html
    assert "Simulated (offline)" in html
    assert "Ollama" not in html
    assert "Configured but disabled: retired." in html


def test_it_lists_usable_models_with_the_price_in_force_now(member_client: Client, registry: Registry) -> None:
    html = member_client.get("/").content.decode()

    assert "openai/gpt-4o-mini" in html
    assert "$0.15" in html and "$0.60" in html
    assert "$9.99" not in html, "an old price is shown"
    assert "$7.77" not in html, "a future price is shown"
    assert "$0.075" in html and "$0.00" in html
    assert "128,000" in html
    assert "sim/off" not in html


def test_it_shows_each_enabled_route_with_its_chain_in_order(member_client: Client, registry: Registry) -> None:
    html = member_client.get("/").content.decode()

    assert "auto" in html
    assert html.index("<code>sim/fast</code>") < html.index("<code>openai/gpt-4o-mini</code>")
    assert "hidden-route" not in html


def test_it_shows_how_to_call_the_api_with_the_openai_sdk(member_client: Client, registry: Registry) -> None:
    html = member_client.get("/").content.decode()

    assert 'base_url="http://testserver/v1"' in html
    assert 'model="auto"' in html


def test_it_never_renders_a_provider_key_or_its_encrypted_form(member_client: Client, registry: Registry) -> None:
    html = member_client.get("/").content.decode()

    openai = registry["openai"]
    assert SECRET not in html
    assert openai.api_key_encrypted not in html
    assert openai.api_key_encrypted[:16] not in html


def test_it_shows_the_admin_link_to_staff_only(client: Client) -> None:
    users = get_user_model().objects
    client.force_login(users.create_user(username="alice", password="correct horse battery"))
    assert "/admin/" not in client.get("/").content.decode()

    client.force_login(users.create_user(username="bob", password="correct horse battery", is_staff=True))
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_it_logs_out_with_a_post_form(member_client: Client) -> None:
    html = member_client.get("/").content.decode()
    assert '<form method="post" action="/accounts/logout/">' in html

    response = member_client.post("/accounts/logout/")

    assert response.status_code == 302
    assert member_client.get("/").status_code == 302


def test_it_renders_empty_states_without_any_configuration(member_client: Client) -> None:
    html = member_client.get("/").content.decode()

    assert "No route is enabled yet." in html
    assert "No model is enabled yet." in html
    assert "No provider is enabled yet." in html
    assert 'model="auto"' in html
