from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from routing import demo, selectors, services
from routing.catalog import get_catalog
from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep
from routing.providers.simulated import SimulatedOptions
from tests.prices import price_at

pytestmark = pytest.mark.django_db

KEY_ENVS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "DASHSCOPE_API_KEY")


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_ENVS:
        monkeypatch.delenv(name, raising=False)


def load_demo() -> str:
    out = StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


def snapshot() -> dict[str, list[tuple]]:
    return {
        "providers": list(Provider.objects.values_list("name", "kind", "base_url", "enabled", "updated_at")),
        "models": list(LanguageModel.objects.values_list("public_id", "enabled", "options", "updated_at")),
        "prices": list(
            ModelPrice.objects.values_list(
                "model__public_id", "valid_from", "input_per_million", "cached_input_per_million"
            )
        ),
        "routes": list(Route.objects.values_list("name", "temperature", "max_tokens", "updated_at")),
        "steps": list(RouteStep.objects.values_list("route__name", "model__public_id", "position")),
    }


def test_load_demo_creates_the_registry_and_prints_one_line():
    output = load_demo()

    models = sum(len(p["models"]) for p in demo.PROVIDERS)
    prices = sum(len(m.get("prices", ())) for p in demo.PROVIDERS for m in p["models"])
    assert output.count("\n") == 1
    assert output.startswith(
        f"Demo registry: created {len(demo.PROVIDERS)} providers, {models} models, {prices} prices, 7 routes;"
    )
    assert (Provider.objects.count(), LanguageModel.objects.count(), ModelPrice.objects.count()) == (7, models, prices)
    # Local models are free, not priced at $0: capped callers may use them.
    assert set(LanguageModel.objects.filter(free=True).values_list("public_id", flat=True)) == {
        "ollama/llama3.2",
        "ollama/qwen2.5-coder",
    }


def test_load_demo_twice_changes_nothing():
    load_demo()
    before = snapshot()

    output = load_demo()

    assert snapshot() == before
    assert "created 0 providers, 0 models, 0 prices, 0 routes" in output
    assert "skipped" not in output


def test_every_demo_route_has_a_valid_chain_of_enabled_simulated_models():
    load_demo()

    routes = list(selectors.routes_with_chains())
    assert sorted(r.name for r in routes) == ["arena", "auto", "cheap", "coding", "fast", "reasoning", "smart"]
    for route in routes:
        chain = selectors.route_chain_for(route=route)
        services.route_chain_validate(models=chain, max_tokens=route.max_tokens)
        assert {m.provider.kind for m in chain} == {"simulated"}
        services.route_defaults_validate(
            temperature=route.temperature, max_tokens=route.max_tokens, system_prompt=route.system_prompt
        )
    auto = Route.objects.get(name="auto")
    assert [m.public_id for m in selectors.route_chain_for(route=auto)] == ["sim/flaky-7b", "sim/atlas", "sim/sage-pro"]
    strategies = {r.name: r.strategy for r in routes}
    assert (strategies["cheap"], strategies["fast"], strategies["smart"], strategies["arena"]) == (
        "budget",
        "fastest",
        "cascade",
        "quality",
    )
    # One route shows the response cache, and says so.
    cached = [r for r in routes if r.cache_enabled]
    assert [r.name for r in cached] == ["coding"]
    assert "cache" in cached[0].description


def test_the_simulated_models_carry_the_adapter_options_and_priced_rows():
    load_demo()

    flaky = LanguageModel.objects.get(public_id="sim/flaky-7b")
    assert flaky.options["fail_rate"] == 0.3
    assert flaky.options["fail_mode"] == "rate_limit"
    for model in LanguageModel.objects.filter(provider__name="sim"):
        assert set(model.options) == {
            "first_token_ms",
            "tokens_per_second",
            "output_tokens",
            "style",
            "fail_rate",
            "fail_mode",
        }
        SimulatedOptions.from_options(model.options)
        assert isinstance(price_at(model).input_per_million, Decimal)
    assert sorted(m.public_id for m in get_catalog().models.values() if m.usable) == [
        "sim/atlas",
        "sim/flaky-7b",
        "sim/sage-pro",
        "sim/swift-mini",
    ]


def test_real_providers_stay_disabled_until_a_key_is_set(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-from-env")

    load_demo()

    enabled = dict(Provider.objects.values_list("name", "enabled"))
    assert enabled == {
        "anthropic": False,
        "deepseek": True,
        "google": False,
        "ollama": False,
        "openai": False,
        "qwen": False,
        "sim": True,
    }
    assert Provider.objects.get(name="openai").key_status() == "$OPENAI_API_KEY not set"


def test_real_models_have_their_limits_and_dated_list_prices():
    load_demo()

    gpt = LanguageModel.objects.get(public_id="openai/gpt-4o")
    assert (gpt.context_window, gpt.max_output_tokens) == (128_000, 16_384)
    assert {"vision", "tools", "json"} <= set(gpt.capabilities)
    price = price_at(gpt)
    assert (price.input_per_million, price.output_per_million) == (Decimal("2.50"), Decimal("10.00"))
    assert LanguageModel.objects.get(public_id="anthropic/claude-sonnet-4").upstream_name == "claude-sonnet-4-20250514"
    deepseek = LanguageModel.objects.get(public_id="deepseek/deepseek-chat")
    assert price_at(deepseek, dt.datetime(2025, 5, 1, tzinfo=dt.UTC)).output_per_million == Decimal("1.10")
    assert price_at(deepseek).output_per_million == Decimal("0.42")
    for model in LanguageModel.objects.select_related("provider"):
        model.full_clean()
        assert model.free or price_at(model) is not None, model


def test_cache_prices_are_set_only_where_the_provider_publishes_them():
    load_demo()

    def cache_prices(public_id: str) -> tuple[Decimal | None, Decimal | None]:
        price = price_at(LanguageModel.objects.get(public_id=public_id))
        assert price is not None
        return price.cached_input_per_million, price.cache_write_per_million

    # OpenAI bills cached input at a discount and has no cache write price.
    assert cache_prices("openai/gpt-4o") == (Decimal("1.25"), None)
    assert cache_prices("openai/gpt-4o-mini") == (Decimal("0.075"), None)
    assert cache_prices("openai/gpt-4.1") == (Decimal("0.50"), None)
    assert cache_prices("openai/gpt-4.1-mini") == (Decimal("0.10"), None)
    assert cache_prices("openai/o3-mini") == (Decimal("0.55"), None)
    # Anthropic: cache reads at a tenth of the input price, 5-minute cache writes at 1.25 times it.
    assert cache_prices("anthropic/claude-sonnet-4") == (Decimal("0.30"), Decimal("3.75"))
    assert cache_prices("anthropic/claude-3-5-haiku") == (Decimal("0.08"), Decimal("1.00"))
    assert cache_prices("anthropic/claude-opus-4") == (Decimal("1.50"), Decimal("18.75"))
    blank = {"google", "deepseek", "qwen", "sim"}
    for model in LanguageModel.objects.filter(provider__name__in=blank):
        assert cache_prices(model.public_id) == (None, None), model


def test_load_demo_never_overwrites_an_admins_later_edits():
    load_demo()
    atlas = LanguageModel.objects.get(public_id="sim/atlas")
    atlas.display_name = "Atlas, renamed"
    atlas.save()
    services.model_price_set(model=atlas, input_per_million=Decimal("2"), output_per_million=Decimal("8"))
    auto = Route.objects.get(name="auto")
    services.route_chain_set(route=auto, models=[atlas])
    Provider.objects.filter(name="openai").update(enabled=True)
    Route.objects.filter(name="fast").delete()

    output = load_demo()

    atlas.refresh_from_db()
    assert atlas.display_name == "Atlas, renamed"
    assert price_at(atlas).input_per_million == Decimal("2")
    assert [m.public_id for m in selectors.route_chain_for(route=auto)] == ["sim/atlas"]
    assert Provider.objects.get(name="openai").enabled is True
    assert "created 0 providers, 0 models, 0 prices, 1 routes" in output
    assert Route.objects.filter(name="fast").exists()


def test_a_route_whose_chain_became_invalid_is_skipped_and_reported():
    load_demo()
    Route.objects.filter(name="cheap").delete()
    LanguageModel.objects.filter(public_id="sim/flaky-7b").update(enabled=False)

    output = load_demo()

    assert "skipped 1: route cheap (sim/flaky-7b is disabled" in output
    assert not Route.objects.filter(name="cheap").exists()
