"""Reads of the registry for pages and forms: current prices, chains, usable models.

The hot path of a call reads routing/catalog.py's in-memory snapshot instead;
these are for the admin and other pages, and each runs a fixed number of
queries whatever the number of rows.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone

from routing.models import LanguageModel, ModelPrice, Provider, Route, RouterModel, RouterTrainingFailure, RouteStep

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class CurrentPrice(TypedDict):
    current_input_per_million: Decimal | None
    current_output_per_million: Decimal | None


class ModelCount(TypedDict):
    model_count: int


if TYPE_CHECKING:
    # A model as models_with_current_price() yields it, a provider as providers_with_model_count() does.
    PricedModel = WithAnnotations[LanguageModel, CurrentPrice]
    CountedProvider = WithAnnotations[Provider, ModelCount]


def model_and_route_names() -> dict[str, list[str]]:
    """Every model's public id and every route's name, in order: what a filter by model or route offers."""
    return {
        "models": list(LanguageModel.objects.order_by("public_id").values_list("public_id", flat=True)),
        "routes": list(Route.objects.order_by("name").values_list("name", flat=True)),
    }


def models_with_current_price(*, at: dt.datetime | None = None) -> QuerySet[PricedModel]:
    """All models with their provider, annotated with the price in force at `at` (now).

    Each model gains `current_input_per_million` and `current_output_per_million`
    (None without a price), computed in the same query.
    """
    at = at or timezone.now()
    in_force = ModelPrice.objects.filter(model=OuterRef("pk"), valid_from__lte=at).order_by("-valid_from")
    return LanguageModel.objects.select_related("provider").annotate(
        current_input_per_million=Subquery(in_force.values("input_per_million")[:1]),
        current_output_per_million=Subquery(in_force.values("output_per_million")[:1]),
    )


def model_ids_with_capability(*, capability: str) -> list[int]:
    """Ids of the models tagged `capability`.

    The tags are a JSON list, and SQLite has no JSON containment lookup, so
    the tags are matched here rather than in SQL: one small query on any
    database, exact (a tag never matches part of another tag).
    """
    return [pk for pk, tags in LanguageModel.objects.values_list("pk", "capabilities") if capability in (tags or [])]


def providers_with_model_count() -> QuerySet[CountedProvider]:
    """All providers, each annotated with `model_count`."""
    return Provider.objects.annotate(model_count=Count("models"))


def routes_with_chains() -> QuerySet[Route]:
    """All routes with their steps (and each step's model and provider) loaded in order."""
    steps = RouteStep.objects.select_related("model__provider").order_by("position", "pk")
    return Route.objects.prefetch_related(Prefetch("steps", queryset=steps))


def route_chain_for(*, route: Route) -> list[LanguageModel]:
    """The models of `route`'s fallback chain, first to last.

    Uses the steps loaded by routes_with_chains() when present, else one query.
    """
    if "steps" in getattr(route, "_prefetched_objects_cache", {}):
        steps = route.steps.all()
    else:
        steps = route.steps.select_related("model__provider").order_by("position", "pk")
    return [step.model for step in steps]


def routes_using(*, models: QuerySet[LanguageModel] | list[LanguageModel]) -> list[Route]:
    """Routes whose chain contains any of `models`, by name."""
    return list(Route.objects.filter(steps__model__in=models).distinct().order_by("name"))


def learned_training_failure(*, route: Route, newest: RouterModel | None) -> RouterTrainingFailure | None:
    """The route's newest failed training, unless a version was trained since (`newest`: its newest version)."""
    failure = RouterTrainingFailure.objects.filter(route=route).first()
    if failure is None or (newest is not None and newest.trained_at >= failure.failed_at):
        return None
    return failure
