"""Site pages that belong to no single app: the home page."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.money import format_usd
from routing import selectors
from routing.models import LanguageModel, Provider, Route

CENT = Decimal("0.01")


@dataclass(frozen=True)
class ModelRow:
    model: LanguageModel
    context_window: str
    input_price: str
    output_price: str


@dataclass(frozen=True)
class RouteRow:
    route: Route
    chain: list[LanguageModel]


def _providers() -> tuple[list[Provider], list[Provider]]:
    """Enabled and disabled providers, each by name."""
    # An aggregate query ignores Meta.ordering: order explicitly.
    providers = list(selectors.providers_with_model_count().order_by("name"))
    return [p for p in providers if p.enabled], [p for p in providers if not p.enabled]


def _models() -> list[ModelRow]:
    models = selectors.models_with_current_price().filter(enabled=True, provider__enabled=True)
    return [
        ModelRow(
            m,
            f"{m.context_window:,}",
            format_usd(m.current_input_per_million),
            format_usd(m.current_output_per_million),
        )
        for m in models
    ]


def _routes() -> list[RouteRow]:
    routes = selectors.routes_with_chains().filter(enabled=True)
    return [RouteRow(route, selectors.route_chain_for(route=route)) for route in routes]


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    (providers, disabled_providers), models, routes = _providers(), _models(), _routes()
    example_model = routes[0].route.name if routes else (models[0].model.public_id if models else "auto")
    return render(
        request,
        "home.html",
        {
            "providers": providers,
            "disabled_providers": disabled_providers,
            "models": models,
            "routes": routes,
            "api_base_url": request.build_absolute_uri("/v1"),
            "example_model": example_model,
        },
    )
