"""The registry admin, driven through real form posts (management forms included)."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from routing import selectors
from routing.models import LanguageModel, Provider, Route
from tests.prices import price_at

pytestmark = pytest.mark.django_db

KEY = "sk-live-DO-NOT-LEAK-0123456789abcdef"
JAN = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def url(name: str, *args: object) -> str:
    return reverse(f"admin:routing_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def openai() -> Provider:
    return Provider.objects.create(name="openai", kind=Provider.Kind.OPENAI, base_url="https://api.openai.com/v1")


# Providers


def test_the_provider_list_shows_key_status_and_model_count_in_bounded_queries(
    superuser_client, sim, openai, make_model, django_assert_max_num_queries
):
    for i in range(6):
        make_model(f"m{i}")
    openai.set_api_key(KEY)
    openai.save()

    with django_assert_max_num_queries(6):
        response = superuser_client.get(url("provider_changelist"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "stored (encrypted)" in page
    assert KEY not in page and openai.api_key_encrypted not in page
    assert {p.name: p.model_count for p in response.context["cl"].result_list} == {"openai": 0, "sim": 6}


def test_an_api_key_is_stored_encrypted_and_never_rendered_logged_or_kept_in_history(
    superuser_client, openai, page_form, caplog
):
    change = url("provider_change", openai.pk)
    data = page_form(superuser_client, change, "provider_form")
    assert "api_key" in data and data["api_key"] == ""
    data["api_key"] = KEY

    with caplog.at_level(logging.DEBUG):
        response = superuser_client.post(change, data)
        assert response.status_code == 302
        openai.refresh_from_db()
        ciphertext = openai.api_key_encrypted
        page = superuser_client.get(change).content.decode()
        history = superuser_client.get(url("provider_history", openai.pk)).content.decode()

    assert openai.api_key() == KEY
    assert ciphertext and KEY not in ciphertext
    assert "stored (encrypted)" in page
    for text in (page, history, caplog.text, LogEntry.objects.get().get_change_message()):
        assert KEY not in text
        assert ciphertext not in text
    assert "API key" in LogEntry.objects.get().get_change_message()


def test_an_empty_key_field_keeps_the_stored_key(superuser_client, openai, page_form):
    openai.set_api_key(KEY)
    openai.save()
    ciphertext = openai.api_key_encrypted
    change = url("provider_change", openai.pk)
    data = page_form(superuser_client, change, "provider_form")
    data["display_name"] = "OpenAI"

    assert superuser_client.post(change, data).status_code == 302

    openai.refresh_from_db()
    assert openai.display_name == "OpenAI"
    assert openai.api_key_encrypted == ciphertext


def test_clear_stored_key_removes_it(superuser_client, openai, page_form):
    openai.set_api_key(KEY)
    openai.save()
    change = url("provider_change", openai.pk)
    data = page_form(superuser_client, change, "provider_form")
    data["clear_api_key"] = "on"

    assert superuser_client.post(change, data).status_code == 302

    openai.refresh_from_db()
    assert openai.api_key_encrypted == ""
    assert openai.key_status() == "none"


def test_a_refused_form_does_not_echo_the_typed_key(superuser_client, page_form):
    add = url("provider_add")
    data = page_form(superuser_client, add, "provider_form")
    data.update(name="anthropic", kind="anthropic", base_url="", api_key=KEY)

    response = superuser_client.post(add, data)

    assert response.status_code == 200
    page = response.content.decode()
    assert "A Anthropic Messages provider needs a base URL" in page
    assert KEY not in page
    assert not Provider.objects.exists()


def test_a_new_key_and_clear_at_once_is_refused(superuser_client, openai, page_form):
    change = url("provider_change", openai.pk)
    data = page_form(superuser_client, change, "provider_form")
    data.update(api_key=KEY, clear_api_key="on")

    response = superuser_client.post(change, data)

    assert response.status_code == 200
    assert "Either enter a new key or clear the stored one" in response.content.decode()
    openai.refresh_from_db()
    assert openai.api_key_encrypted == ""


def test_disabling_a_provider_warns_about_the_routes_that_use_its_models(
    superuser_client, sim, make_model, make_route, page_form
):
    make_route("auto", [make_model("atlas")])
    change = url("provider_change", sim.pk)
    data = page_form(superuser_client, change, "provider_form")
    del data["enabled"]

    response = superuser_client.post(change, data)

    assert response.status_code == 302
    assert any("fallback chain of: auto" in m for m in messages_of(response))


# Models and prices


def test_the_model_list_shows_current_prices_capabilities_and_runs_bounded_queries(
    superuser_client, make_model, django_assert_max_num_queries
):
    make_model("gpt", capabilities=["code", "long-context"], price=("2.50", "10.00"))
    make_model("tiny", price=("0.075", "0.3"))
    make_model("unpriced")

    with django_assert_max_num_queries(6):
        response = superuser_client.get(url("languagemodel_changelist"))
    for i in range(10):
        make_model(f"more{i}", price=("1", "2"), capabilities=["json"])
    with django_assert_max_num_queries(7):
        filtered = superuser_client.get(url("languagemodel_changelist"), {"capability": "json"})
    assert len(filtered.context["cl"].result_list) == 10

    page = response.content.decode()
    assert "$2.50 / $10.00" in page
    assert "$0.075 / $0.30" in page
    assert "no price" in page
    assert "code, long-context" in page


def test_the_capability_filter_keeps_only_models_with_that_tag(superuser_client, make_model):
    make_model("coder", capabilities=["code", "json"])
    make_model("talker", capabilities=["multilingual"])
    make_model("plain")

    response = superuser_client.get(url("languagemodel_changelist"), {"capability": "code"})

    assert [m.public_id for m in response.context["cl"].result_list] == ["sim/coder"]


def test_a_model_is_added_with_capability_checkboxes_and_a_first_price(superuser_client, sim, page_form):
    add = url("languagemodel_add")
    data = page_form(superuser_client, add, "languagemodel_form")
    data.update(
        {
            "public_id": "sim/new",
            "provider": str(sim.pk),
            "upstream_name": "new",
            "context_window": "8192",
            "max_output_tokens": "1024",
            "capabilities": ["long-context", "code"],
            "prices-0-input_per_million": "0.50",
            "prices-0-output_per_million": "1.50",
        }
    )

    response = superuser_client.post(add, data)

    assert response.status_code == 302, response.context["errors"] if response.context else response
    model = LanguageModel.objects.get(public_id="sim/new")
    assert model.capabilities == ["code", "long-context"]
    assert price_at(model).input_per_million == Decimal("0.50")


def test_a_public_id_must_start_with_the_provider_name(superuser_client, sim, page_form):
    add = url("languagemodel_add")
    data = page_form(superuser_client, add, "languagemodel_form")
    data.update(
        public_id="other/new",
        provider=str(sim.pk),
        upstream_name="new",
        context_window="8192",
        max_output_tokens="1024",
    )

    response = superuser_client.post(add, data)

    assert response.status_code == 200
    assert "Must start with the provider name: sim/" in response.content.decode()


def test_editing_a_price_adds_a_dated_row_and_leaves_the_old_row_untouched(superuser_client, make_model, page_form):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=JAN)
    old = model.prices.get()
    change = url("languagemodel_change", model.pk)
    data = page_form(superuser_client, change, "languagemodel_form")
    assert data["prices-INITIAL_FORMS"] == "1"
    assert "prices-0-input_per_million" not in data  # the old row is read-only
    data.update(
        {
            "prices-1-valid_from_0": "2025-06-01",
            "prices-1-valid_from_1": "12:00:00",
            "prices-1-input_per_million": "0.80",
            "prices-1-output_per_million": "3.20",
            "prices-1-cached_input_per_million": "0.08",
            # A hand-made post cannot rewrite history either.
            "prices-0-id": str(old.pk),
            "prices-0-valid_from_0": "2024-01-01",
            "prices-0-input_per_million": "999",
        }
    )

    response = superuser_client.post(change, data)

    assert response.status_code == 302
    old.refresh_from_db()
    assert (old.valid_from, old.input_per_million, old.output_per_million) == (JAN, Decimal("1.00"), Decimal("4.00"))
    new = model.prices.exclude(pk=old.pk).get()
    assert new.valid_from == dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
    assert (new.input_per_million, new.output_per_million) == (Decimal("0.80"), Decimal("3.20"))
    # A cache price left blank is billed at the input price.
    assert (new.cached_input_per_million, new.cache_write_per_million) == (Decimal("0.08"), None)
    assert price_at(model, dt.datetime(2025, 3, 1, tzinfo=dt.UTC)).valid_from == old.valid_from
    assert price_at(model).valid_from == new.valid_from


def test_a_price_older_than_the_newest_row_is_refused_with_a_message(superuser_client, make_model, page_form):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    change = url("languagemodel_change", model.pk)
    data = page_form(superuser_client, change, "languagemodel_form")
    data.update(
        {
            "prices-1-valid_from_0": "2025-03-01",
            "prices-1-valid_from_1": "00:00:00",
            "prices-1-input_per_million": "0.80",
            "prices-1-output_per_million": "3.20",
        }
    )

    response = superuser_client.post(change, data)

    assert response.status_code == 200
    assert "A new price must start after the newest price of sim/atlas" in response.content.decode()
    assert model.prices.count() == 1


def test_an_unchanged_model_form_adds_no_price(superuser_client, make_model, page_form):
    model = make_model("atlas", price=("1.00", "4.00"))
    change = url("languagemodel_change", model.pk)

    assert superuser_client.post(change, page_form(superuser_client, change, "languagemodel_form")).status_code == 302
    assert model.prices.count() == 1


def test_disabling_a_model_in_a_chain_is_allowed_with_a_warning_naming_the_routes(
    superuser_client, make_model, make_route, page_form
):
    atlas, other = make_model("atlas"), make_model("other")
    make_route("coding", [atlas])
    make_route("auto", [other, atlas])
    make_route("cheap", [other])
    change = url("languagemodel_change", atlas.pk)
    data = page_form(superuser_client, change, "languagemodel_form")
    del data["enabled"]

    response = superuser_client.post(change, data)

    assert response.status_code == 302
    atlas.refresh_from_db()
    assert atlas.enabled is False
    warnings = [m for m in messages_of(response) if "fallback chain" in m]
    assert len(warnings) == 1
    assert "sim/atlas" in warnings[0] and "auto, coding." in warnings[0]


def test_the_price_book_lists_every_row_and_adds_but_never_changes_or_deletes(
    superuser_client, make_model, page_form, django_assert_max_num_queries
):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=JAN)
    price = model.prices.get()
    for i in range(5):
        make_model(f"m{i}", price=("1", "2"))

    with django_assert_max_num_queries(9):
        listing = superuser_client.get(url("modelprice_changelist"))
    assert listing.status_code == 200
    assert "$1.00" in listing.content.decode()
    assert "as input" in listing.content.decode(), "a blank cache price reads as the input price"
    assert superuser_client.post(url("modelprice_change", price.pk), {"input_per_million": "9"}).status_code == 403
    assert superuser_client.post(url("modelprice_delete", price.pk), {"post": "yes"}).status_code == 403

    add = url("modelprice_add")
    data = page_form(superuser_client, add, "modelprice_form")
    data.update(
        {
            "model": str(model.pk),
            "valid_from_0": "2024-12-01",
            "valid_from_1": "00:00:00",
            "input_per_million": "2",
            "output_per_million": "5",
            "cache_write_per_million": "2.50",
        }
    )
    refused = superuser_client.post(add, data)
    assert refused.status_code == 200
    assert "must start after the newest price" in refused.content.decode()

    data.update({"valid_from_0": "2025-02-01"})
    assert superuser_client.post(add, data).status_code == 302
    price.refresh_from_db()
    assert price.input_per_million == Decimal("1.00")
    now = price_at(model)
    assert (now.input_per_million, now.cached_input_per_million, now.cache_write_per_million) == (2, None, 2.5)
    assert model.prices.count() == 2


# Routes


def test_the_route_list_shows_each_chain_in_bounded_queries(
    superuser_client, make_model, make_route, django_assert_max_num_queries
):
    a, b, c = make_model("a"), make_model("b"), make_model("c")
    make_route("auto", [c, a, b], description="The default")
    for i in range(8):
        make_route(f"r{i}", [a, b])

    with django_assert_max_num_queries(6):
        response = superuser_client.get(url("route_changelist"))

    assert "sim/c → sim/a → sim/b" in response.content.decode()


def chain_of(name: str) -> list[str]:
    return [m.public_id for m in selectors.route_chain_for(route=Route.objects.get(name=name))]


def test_a_route_is_added_with_its_chain(superuser_client, make_model, page_form):
    atlas = make_model("atlas")
    add = url("route_add")
    data = page_form(superuser_client, add, "route_form")
    data.update({"name": "coding", "temperature": "0.2", "steps-0-model": str(atlas.pk)})

    assert superuser_client.post(add, data).status_code == 302
    assert chain_of("coding") == ["sim/atlas"]


def test_a_route_without_a_chain_is_refused(superuser_client, page_form):
    add = url("route_add")
    data = page_form(superuser_client, add, "route_form")
    data["name"] = "empty"

    response = superuser_client.post(add, data)

    assert response.status_code == 200
    assert "A route needs at least one model in its chain." in response.content.decode()
    assert not Route.objects.exists()


def test_removing_every_step_is_refused(superuser_client, make_model, make_route, page_form):
    route = make_route("auto", [make_model("a")])
    change = url("route_change", route.pk)
    data = page_form(superuser_client, change, "route_form")
    data["steps-0-DELETE"] = "on"

    response = superuser_client.post(change, data)

    assert response.status_code == 200
    assert "A route needs at least one model in its chain." in response.content.decode()
    assert chain_of("auto") == ["sim/a"]


def test_a_disabled_model_in_a_chain_is_refused_with_its_name(superuser_client, make_model, make_route, page_form):
    a, off = make_model("a"), make_model("off", enabled=False)
    route = make_route("auto", [a])
    change = url("route_change", route.pk)
    data = page_form(superuser_client, change, "route_form")
    data["steps-0-model"] = str(off.pk)

    response = superuser_client.post(change, data)

    assert response.status_code == 200
    message = "sim/off is disabled; a chain may only contain enabled models."
    assert message in response.content.decode()
    assert response.context["inline_admin_formsets"][0].formset.non_form_errors() == [message]
    assert chain_of("auto") == ["sim/a"]


def test_a_model_twice_in_a_chain_is_refused_with_its_name(superuser_client, make_model, make_route, page_form):
    a, b = make_model("a"), make_model("b")
    route = make_route("auto", [a, b])
    change = url("route_change", route.pk)
    data = page_form(superuser_client, change, "route_form")
    data["steps-1-model"] = str(a.pk)

    response = superuser_client.post(change, data)

    assert response.status_code == 200
    assert "sim/a appears more than once in the chain" in response.content.decode()
    assert chain_of("auto") == ["sim/a", "sim/b"]


def test_the_same_model_in_two_new_rows_is_refused_not_a_server_error(superuser_client, make_model, page_form):
    a = make_model("a")
    add = url("route_add")
    data = page_form(superuser_client, add, "route_form")
    data.update({"name": "dup", "steps-TOTAL_FORMS": "2", "steps-0-model": str(a.pk), "steps-1-model": str(a.pk)})

    response = superuser_client.post(add, data)

    assert response.status_code == 200
    assert "sim/a appears more than once in the chain" in response.content.decode()
    assert not Route.objects.exists()


def test_reordering_the_chain_by_position_persists(superuser_client, make_model, make_route, page_form):
    route = make_route("auto", [make_model("a"), make_model("b"), make_model("c")])
    change = url("route_change", route.pk)
    data = page_form(superuser_client, change, "route_form")
    assert [data[f"steps-{i}-position"] for i in range(3)] == ["1", "2", "3"]
    data.update({"steps-0-position": "3", "steps-1-position": "1", "steps-2-position": "2"})

    assert superuser_client.post(change, data).status_code == 302
    assert chain_of("auto") == ["sim/b", "sim/c", "sim/a"]


def test_swapping_two_models_saves_without_tripping_the_unique_constraint(
    superuser_client, make_model, make_route, page_form
):
    a, b, c = make_model("a"), make_model("b"), make_model("c")
    route = make_route("auto", [a, b, c])
    change = url("route_change", route.pk)
    data = page_form(superuser_client, change, "route_form")
    data.update({"steps-0-model": str(b.pk), "steps-1-model": str(a.pk), "steps-2-DELETE": "on"})

    assert superuser_client.post(change, data).status_code == 302
    assert chain_of("auto") == ["sim/b", "sim/a"]


def test_a_step_added_to_a_chain_goes_last(superuser_client, make_model, make_route, page_form):
    a, b = make_model("a"), make_model("b")
    route = make_route("auto", [a])
    change = url("route_change", route.pk)
    data = page_form(superuser_client, change, "route_form")
    data.update({"steps-TOTAL_FORMS": "2", "steps-1-model": str(b.pk)})

    assert superuser_client.post(change, data).status_code == 302
    assert chain_of("auto") == ["sim/a", "sim/b"]


def test_default_parameters_out_of_range_are_refused(superuser_client, make_model, make_route, page_form):
    route = make_route("auto", [make_model("a", max_output_tokens=2_000)])
    change = url("route_change", route.pk)
    data = page_form(superuser_client, change, "route_form")
    data.update(temperature="2.5")

    response = superuser_client.post(change, data)
    assert response.status_code == 200
    assert "Temperature must be between 0 and 2." in response.content.decode()

    data.update(temperature="1", max_tokens="4000")
    response = superuser_client.post(change, data)
    assert response.status_code == 200
    assert "exceed what sim/a can produce (2000)" in response.content.decode()
    route.refresh_from_db()
    assert (route.temperature, route.max_tokens) == (None, None)
