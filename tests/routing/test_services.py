from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from routing import secrets, selectors, services
from routing.catalog import get_catalog
from routing.models import ModelPrice, Provider
from tests.prices import price_at

pytestmark = pytest.mark.django_db

JAN = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
JUN = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def test_it_adds_a_dated_price_row_and_never_edits_the_old_one(make_model):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=JAN)
    old = model.prices.get()

    new = services.model_price_set(
        model=model, input_per_million=Decimal("0.80"), output_per_million=Decimal("3.20"), valid_from=JUN
    )

    assert new.pk != old.pk
    old.refresh_from_db()
    assert (old.valid_from, old.input_per_million, old.output_per_million) == (JAN, Decimal("1.00"), Decimal("4.00"))
    assert model.prices.count() == 2


def test_price_at_returns_the_price_in_force_at_past_and_present_moments(make_model):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=JAN)
    services.model_price_set(
        model=model, input_per_million=Decimal("0.80"), output_per_million=Decimal("3.20"), valid_from=JUN
    )

    assert price_at(model, JAN - dt.timedelta(seconds=1)) is None
    assert price_at(model, JAN).input_per_million == Decimal("1.00")
    assert price_at(model, JUN - dt.timedelta(microseconds=1)).input_per_million == Decimal("1.00")
    assert price_at(model, JUN).input_per_million == Decimal("0.80")
    assert price_at(model).output_per_million == Decimal("3.20")


def test_it_sets_a_price_from_now_by_default(make_model):
    model = make_model("atlas")
    before = timezone.now()

    price = services.model_price_set(model=model, input_per_million=Decimal("1"), output_per_million=Decimal("2"))

    assert before <= price.valid_from <= timezone.now()
    now = price_at(model)
    assert now is not None
    assert (now.valid_from, now.input_per_million, now.output_per_million) == (price.valid_from, 1, 2)


def test_it_refuses_a_price_older_than_the_newest_row_and_says_why(make_model):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=JUN)

    with pytest.raises(ValidationError) as caught:
        services.model_price_set(
            model=model, input_per_million=Decimal("9"), output_per_million=Decimal("9"), valid_from=JAN
        )

    message = caught.value.message_dict["valid_from"][0]
    assert "must start after the newest price of sim/atlas" in message
    assert "2025-06-01 00:00:00 UTC" in message
    assert model.prices.count() == 1


def test_it_refuses_a_second_price_at_the_same_moment(make_model):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=JUN)

    with pytest.raises(ValidationError):
        services.model_price_set(
            model=model, input_per_million=Decimal("2"), output_per_million=Decimal("5"), valid_from=JUN
        )
    assert model.prices.get().input_per_million == Decimal("1.00")


def test_it_refuses_float_and_negative_prices(make_model):
    model = make_model("atlas")
    one = Decimal("1")

    with pytest.raises(TypeError):
        services.model_price_set(model=model, input_per_million=0.1, output_per_million=one)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        services.model_price_set(
            model=model,
            input_per_million=one,
            output_per_million=one,
            cached_input_per_million=0.1,  # type: ignore[arg-type]
        )
    with pytest.raises(ValidationError):
        services.model_price_set(model=model, input_per_million=Decimal("-1"), output_per_million=one)
    with pytest.raises(ValidationError):
        services.model_price_set(
            model=model, input_per_million=one, output_per_million=one, cache_write_per_million=Decimal("-1")
        )
    assert not ModelPrice.objects.exists()


def test_a_price_s_cache_prices_are_the_input_price_unless_set(make_model):
    model = make_model("claude")
    services.model_price_set(
        model=model,
        input_per_million=Decimal("3"),
        output_per_million=Decimal("15"),
        cache_write_per_million=Decimal("3.75"),
        valid_from=JAN,
    )
    services.model_price_set(
        model=model,
        input_per_million=Decimal("3"),
        output_per_million=Decimal("15"),
        cached_input_per_million=Decimal("0.30"),
        cache_write_per_million=Decimal("3.75"),
        valid_from=JUN,
    )

    january, june = price_at(model, JAN), price_at(model, JUN)
    assert (january.cached_input_per_million, january.cache_write_per_million) == (None, Decimal("3.75"))
    assert (january.cached_input_price, january.cache_write_price) == (Decimal("3"), Decimal("3.75"))
    assert (june.cached_input_price, june.cache_write_price) == (Decimal("0.30"), Decimal("3.75"))


def test_it_refuses_an_empty_chain():
    with pytest.raises(ValidationError, match="at least one model"):
        services.route_chain_validate(models=[])


def test_it_refuses_a_disabled_model_and_names_it(make_model):
    ok, off = make_model("atlas"), make_model("sleepy", enabled=False)

    with pytest.raises(ValidationError, match="sim/sleepy is disabled"):
        services.route_chain_validate(models=[ok, off])


def test_it_refuses_a_model_of_a_disabled_provider_and_names_both(make_model):
    dead = Provider.objects.create(name="dead", kind=Provider.Kind.SIMULATED, enabled=False)
    model = make_model("m", provider=dead)

    with pytest.raises(ValidationError, match="dead/m belongs to the disabled provider dead"):
        services.route_chain_validate(models=[model])


def test_it_refuses_a_model_listed_twice_and_names_it(make_model):
    a, b = make_model("a"), make_model("b")

    with pytest.raises(ValidationError, match="sim/a appears more than once"):
        services.route_chain_validate(models=[a, b, a])


def test_it_reports_every_problem_of_a_chain_at_once(make_model):
    a, off = make_model("a"), make_model("off", enabled=False)

    with pytest.raises(ValidationError) as caught:
        services.route_chain_validate(models=[a, off, a])

    assert len(caught.value.messages) == 2


def test_it_refuses_a_default_max_tokens_a_model_cannot_produce(make_model):
    small = make_model("small", max_output_tokens=1_000)

    with pytest.raises(ValidationError, match=r"max tokens \(2000\) exceed what sim/small can produce \(1000\)"):
        services.route_chain_validate(models=[small], max_tokens=2_000)
    services.route_chain_validate(models=[small], max_tokens=1_000)


def test_it_rewrites_a_chain_in_order(make_model, make_route):
    a, b, c = make_model("a"), make_model("b"), make_model("c")
    route = make_route("auto", [a, b])

    services.route_chain_set(route=route, models=[c, a])

    assert selectors.route_chain_for(route=route) == [c, a]
    assert list(route.steps.values_list("position", flat=True)) == [1, 2]


def test_it_leaves_a_chain_alone_when_the_new_one_is_invalid(make_model, make_route):
    a, off = make_model("a"), make_model("off", enabled=False)
    route = make_route("auto", [a])

    with pytest.raises(ValidationError):
        services.route_chain_set(route=route, models=[off])
    assert selectors.route_chain_for(route=route) == [a]


def test_route_chain_for_follows_positions_with_or_without_prefetch(make_model, make_route, django_assert_num_queries):
    a, b, c = make_model("a"), make_model("b"), make_model("c")
    make_route("auto", [c, a, b])

    assert [m.public_id for m in selectors.route_chain_for(route=selectors.routes_with_chains().get())] == [
        "sim/c",
        "sim/a",
        "sim/b",
    ]
    routes = list(selectors.routes_with_chains())
    with django_assert_num_queries(0):
        assert [m.provider.name for m in selectors.route_chain_for(route=routes[0])] == ["sim"] * 3


def test_usable_models_leave_out_disabled_models_and_providers(make_model):
    dead = Provider.objects.create(name="dead", kind=Provider.Kind.SIMULATED, enabled=False)
    make_model("on")
    make_model("off", enabled=False)
    make_model("orphan", provider=dead)

    assert [m.public_id for m in get_catalog().models.values() if m.usable] == ["sim/on"]


def test_models_with_current_price_ignores_prices_that_start_later(make_model):
    model = make_model("atlas", price=("1.00", "4.00"), price_from=JAN)
    services.model_price_set(
        model=model,
        input_per_million=Decimal("5"),
        output_per_million=Decimal("6"),
        valid_from=timezone.now() + dt.timedelta(days=30),
    )
    make_model("free")

    rows = {m.public_id: m for m in selectors.models_with_current_price()}

    assert rows["sim/atlas"].current_input_per_million == Decimal("1.00")
    assert rows["sim/atlas"].current_output_per_million == Decimal("4.00")
    assert rows["sim/free"].current_input_per_million is None


def test_it_finds_models_by_capability_exactly(make_model):
    coder = make_model("coder", capabilities=["code", "long-context"])
    make_model("talker", capabilities=["multilingual"])

    assert selectors.model_ids_with_capability(capability="code") == [coder.pk]
    assert selectors.model_ids_with_capability(capability="long") == []


def test_it_stores_an_api_key_encrypted_and_clears_it_with_an_empty_one(sim):
    services.provider_api_key_set(provider=sim, plain_key="  sk-test-123\n")

    sim.refresh_from_db()
    assert "sk-test-123" not in sim.api_key_encrypted
    assert secrets.decrypt(sim.api_key_encrypted) == "sk-test-123"
    assert sim.api_key() == "sk-test-123"

    services.provider_api_key_set(provider=sim, plain_key="")
    sim.refresh_from_db()
    assert sim.api_key_encrypted == ""


def test_it_requires_a_base_url_for_every_kind_but_simulated():
    for kind in ("openai", "anthropic", "gemini", "ollama"):
        with pytest.raises(ValidationError, match="needs a base URL"):
            services.provider_config_validate(kind=kind, base_url=" ")
    services.provider_config_validate(kind="simulated", base_url="")
    services.provider_config_validate(kind="openai", base_url="https://api.openai.com/v1")


def test_it_refuses_default_parameters_out_of_range():
    with pytest.raises(ValidationError) as caught:
        services.route_defaults_validate(temperature=2.5, max_tokens=0, system_prompt="x" * 40_000)

    assert set(caught.value.message_dict) == {"temperature", "max_tokens", "system_prompt"}
    services.route_defaults_validate(temperature=2.0, max_tokens=1, system_prompt="")
