"""Registry, users and keys for the gateway tests, against a fake OpenAI upstream; the other kinds' fakes."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.contrib.auth import get_user_model

from billing.services import api_key_create
from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeUpstream, serve


def _model(
    provider: Provider, name: str, price_in: str, price_out: str, cached_in: str | None = None, **fields: Any
) -> LanguageModel:
    defaults = {"context_window": 128000, "max_output_tokens": 4096, "capabilities": ["code", "json", "tools"]}
    model = LanguageModel.objects.create(
        public_id=f"{provider.name}/{name}", provider=provider, upstream_name=name, **(defaults | fields)
    )
    ModelPrice.objects.create(
        model=model,
        input_per_million=Decimal(price_in),
        output_per_million=Decimal(price_out),
        cached_input_per_million=None if cached_in is None else Decimal(cached_in),
    )
    return model


@pytest.fixture
def registry(fake_openai: tuple[FakeOpenAI, str], transactional_db: Any) -> dict[str, Any]:
    _, url = fake_openai
    up = Provider.objects.create(name="up", kind="openai", base_url=f"{url}/v1", timeout_seconds=5)
    up.set_api_key("sk-upstream-secret")
    up.save()
    up2 = Provider.objects.create(name="up2", kind="openai", base_url=f"{url}/v1", timeout_seconds=5)
    sim = Provider.objects.create(name="sim", kind="simulated")
    models = {
        # OpenAI's list prices, cached input included.
        "gpt": _model(up, "gpt-4o-mini", "0.15", "0.60", cached_in="0.075"),
        "gpt2": _model(up2, "gpt-4o", "2.50", "10.00"),
        "sim": _model(sim, "swift", "0.10", "0.40", options={"tokens_per_second": 0, "output_tokens": 30}),
    }
    auto = Route.objects.create(name="auto", description="test route")
    for position, key in enumerate(["gpt", "gpt2"]):
        RouteStep.objects.create(route=auto, model=models[key], position=position)
    return {"providers": {"up": up, "up2": up2, "sim": sim}, "models": models, "routes": {"auto": auto}}


@pytest.fixture(scope="session")
def other_upstreams() -> Iterator[dict[str, tuple[FakeUpstream, str]]]:
    """The fake upstreams of the other provider kinds, keyed by kind, with the base URL a provider row takes."""
    fakes: dict[str, FakeUpstream] = {"anthropic": FakeAnthropic(), "gemini": FakeGemini(), "ollama": FakeOllama()}
    with (
        serve(fakes["anthropic"]) as anthropic_url,
        serve(fakes["gemini"]) as gemini_url,
        serve(fakes["ollama"]) as ollama_url,
    ):
        yield {
            "anthropic": (fakes["anthropic"], f"{anthropic_url}/v1"),
            "gemini": (fakes["gemini"], f"{gemini_url}/v1beta"),
            "ollama": (fakes["ollama"], ollama_url),
        }


@pytest.fixture
def alice(transactional_db: Any) -> Any:
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def api_key(alice: Any) -> str:
    _, raw = api_key_create(user=alice, name="test")
    return raw


@pytest.fixture
def client(gateway_url: str, api_key: str, celery_worker: Any, registry: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=api_key, max_retries=0, timeout=20)
