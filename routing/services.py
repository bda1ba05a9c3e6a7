"""Writes to the registry: prices, fallback chains, provider keys, the demo set.

Every rule an admin form enforces lives here, so that the admin, the demo
loader and any future API refuse the same things with the same words.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep

# Every kind but `simulated` talks to a real server, so it needs an address.
KINDS_NEEDING_BASE_URL = frozenset(
    {Provider.Kind.OPENAI, Provider.Kind.ANTHROPIC, Provider.Kind.GEMINI, Provider.Kind.OLLAMA}
)
TEMPERATURE_MAX = 2.0
SYSTEM_PROMPT_MAX_CHARS = 32_000


def provider_config_validate(*, kind: str, base_url: str) -> None:
    """Raise ValidationError (on `base_url`) if a provider of `kind` cannot be reached."""
    if kind in KINDS_NEEDING_BASE_URL and not base_url.strip():
        label = Provider.Kind(kind).label
        raise ValidationError({"base_url": f"A {label} provider needs a base URL (its API root)."})


def provider_api_key_set(*, provider: Provider, plain_key: str) -> Provider:
    """Store `plain_key` encrypted on `provider`; an empty key removes the stored one.

    Surrounding whitespace is dropped: keys pasted from a terminal often carry
    a newline that the provider would reject.
    """
    provider.set_api_key(plain_key.strip())
    provider.save(update_fields=["api_key_encrypted", "updated_at"])
    return provider


def model_price_validate_start(*, model: LanguageModel, valid_from: dt.datetime) -> None:
    """Refuse a price that would start at or before the newest price of `model`.

    The price book is history: a call is billed at the price in force when
    it ran, so a row slipped in before the newest one would change what past
    calls should have cost.
    """
    if model.pk is None:
        return
    newest = model.prices.order_by("-valid_from").values_list("valid_from", flat=True).first()
    if newest is not None and valid_from <= newest:
        raise ValidationError(
            {
                "valid_from": ValidationError(
                    "A new price must start after the newest price of %(model)s, which is valid from "
                    "%(newest)s UTC. Earlier prices are history and stay as they were.",
                    code="before_newest_price",
                    params={"model": model.public_id, "newest": f"{newest:%Y-%m-%d %H:%M:%S}"},
                )
            }
        )


def model_price_set(
    *,
    model: LanguageModel,
    input_per_million: Decimal,
    output_per_million: Decimal,
    cached_input_per_million: Decimal | None = None,
    cache_write_per_million: Decimal | None = None,
    valid_from: dt.datetime | None = None,
) -> ModelPrice:
    """Add a dated price row for `model` (from now by default) and return it.

    A cache price left None is billed at the input price. Never edits an
    existing row. Raises ValidationError if `valid_from` is not later than
    the newest existing row, or if an amount is out of range.
    """
    for amount in (input_per_million, output_per_million, cached_input_per_million, cache_write_per_million):
        if amount is not None and not isinstance(amount, Decimal):
            raise TypeError(f"prices are Decimal, not {type(amount).__name__}")
    valid_from = valid_from or timezone.now()
    if timezone.is_naive(valid_from):
        valid_from = timezone.make_aware(valid_from, dt.UTC)
    with transaction.atomic():
        # Serializes concurrent writers of the same model's prices (PostgreSQL;
        # SQLite serializes writers anyway).
        LanguageModel.objects.select_for_update().get(pk=model.pk)
        model_price_validate_start(model=model, valid_from=valid_from)
        price = ModelPrice(
            model=model,
            valid_from=valid_from,
            input_per_million=input_per_million,
            output_per_million=output_per_million,
            cached_input_per_million=cached_input_per_million,
            cache_write_per_million=cache_write_per_million,
        )
        price.full_clean()
        price.save()
    return price


def route_defaults_validate(*, temperature: float | None, max_tokens: int | None, system_prompt: str) -> None:
    """Raise ValidationError (per field) for default parameters no provider accepts."""
    errors: dict[str, str] = {}
    if temperature is not None and not 0.0 <= temperature <= TEMPERATURE_MAX:
        errors["temperature"] = f"Temperature must be between 0 and {TEMPERATURE_MAX:g}."
    if max_tokens is not None and max_tokens < 1:
        errors["max_tokens"] = "Max tokens must be at least 1 (or empty for the model's default)."
    if len(system_prompt) > SYSTEM_PROMPT_MAX_CHARS:
        errors["system_prompt"] = f"The system prompt is limited to {SYSTEM_PROMPT_MAX_CHARS:,} characters."
    if errors:
        raise ValidationError(errors)


def route_chain_validate(*, models: Sequence[LanguageModel], max_tokens: int | None = None) -> None:
    """Raise ValidationError listing every reason `models` is not a usable fallback chain.

    A chain must hold at least one model, each enabled, of an enabled
    provider, and each only once. With `max_tokens` (the route's default), each
    model must also be able to produce that many tokens.
    """
    if not models:
        raise ValidationError("A route needs at least one model in its chain.", code="empty_chain")
    problems: list[ValidationError] = []
    seen: set[int] = set()
    for model in models:
        if model.pk in seen:
            problems.append(
                ValidationError(
                    "%(model)s appears more than once in the chain; each model may appear only once.",
                    code="duplicate_model",
                    params={"model": model.public_id},
                )
            )
            continue
        seen.add(model.pk)
        if not model.enabled:
            problems.append(
                ValidationError(
                    "%(model)s is disabled; a chain may only contain enabled models.",
                    code="disabled_model",
                    params={"model": model.public_id},
                )
            )
        elif not model.provider.enabled:
            problems.append(
                ValidationError(
                    "%(model)s belongs to the disabled provider %(provider)s; a chain may only contain "
                    "models of enabled providers.",
                    code="disabled_provider",
                    params={"model": model.public_id, "provider": model.provider.name},
                )
            )
        if max_tokens is not None and max_tokens > model.max_output_tokens:
            problems.append(
                ValidationError(
                    "The route's max tokens (%(max_tokens)s) exceed what %(model)s can produce "
                    "(%(limit)s); lower the route's max tokens or choose another model.",
                    code="max_tokens_too_high",
                    params={"max_tokens": max_tokens, "model": model.public_id, "limit": model.max_output_tokens},
                )
            )
    if problems:
        raise ValidationError(problems)


def route_chain_set(*, route: Route, models: Sequence[LanguageModel]) -> list[RouteStep]:
    """Validate `models` as `route`'s chain and replace its steps with them, in order."""
    route_chain_validate(models=models, max_tokens=route.max_tokens)
    with transaction.atomic():
        route.steps.all().delete()
        # One save per step (not bulk_create) so that the registry signals fire.
        return [RouteStep.objects.create(route=route, model=model, position=i) for i, model in enumerate(models, 1)]


@dataclass
class DemoLoadSummary:
    """What a demo load did: counts of rows it created, and what it left out and why."""

    created: dict[str, int] = field(default_factory=lambda: {"providers": 0, "models": 0, "prices": 0, "routes": 0})
    kept: int = 0
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        c = self.created
        text = (
            f"Demo registry: created {c['providers']} providers, {c['models']} models, {c['prices']} prices, "
            f"{c['routes']} routes; kept {self.kept} existing rows as they were"
        )
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + "; ".join(self.skipped)
        return text + "."


def demo_registry_load(*, providers: Iterable[dict[str, Any]], routes: Iterable[dict[str, Any]]) -> DemoLoadSummary:
    """Create whatever of the demo providers, models, prices and routes is missing.

    Existing rows are never changed, so running it again, or after an admin
    has edited the demo rows, changes nothing. A real provider is enabled on
    creation only if its key's environment variable is set. A price older
    than a model's newest price, and a route whose chain is not valid now,
    are skipped and reported.
    """
    summary = DemoLoadSummary()
    with transaction.atomic():
        for spec in providers:
            provider = _demo_provider(spec, summary)
            for model_spec in spec["models"]:
                _demo_model(provider, model_spec, summary)
        for spec in routes:
            _demo_route(spec, summary)
    return summary


def _demo_provider(spec: dict[str, Any], summary: DemoLoadSummary) -> Provider:
    provider = Provider.objects.filter(name=spec["name"]).first()
    if provider is not None:
        summary.kept += 1
        return provider
    env = spec.get("api_key_env", "")
    enabled = spec["kind"] == Provider.Kind.SIMULATED or bool(env and os.environ.get(env))
    provider = Provider(
        name=spec["name"],
        display_name=spec.get("display_name", ""),
        kind=spec["kind"],
        base_url=spec.get("base_url", ""),
        api_key_env=env,
        options=spec.get("options", {}),
        enabled=spec.get("enabled", enabled),
    )
    provider_config_validate(kind=provider.kind, base_url=provider.base_url)
    provider.full_clean()
    provider.save()
    summary.created["providers"] += 1
    return provider


def _demo_model(provider: Provider, spec: dict[str, Any], summary: DemoLoadSummary) -> None:
    public_id = f"{provider.name}/{spec['name']}"
    model = LanguageModel.objects.filter(public_id=public_id).first()
    if model is None:
        model = LanguageModel(
            public_id=public_id,
            provider=provider,
            upstream_name=spec.get("upstream_name", spec["name"]),
            display_name=spec.get("display_name", ""),
            context_window=spec["context_window"],
            max_output_tokens=spec["max_output_tokens"],
            capabilities=list(spec.get("capabilities", [])),
            options=dict(spec.get("options", {})),
            free=spec.get("free", False),
            enabled=spec.get("enabled", True),
        )
        model.full_clean()
        model.save()
        summary.created["models"] += 1
    else:
        summary.kept += 1
    existing = set(model.prices.values_list("valid_from", flat=True))
    for price in sorted(spec.get("prices", [])):
        if price.valid_from in existing:
            summary.kept += 1
            continue
        try:
            model_price_set(
                model=model,
                input_per_million=price.input_per_million,
                output_per_million=price.output_per_million,
                cached_input_per_million=price.cached_input_per_million,
                cache_write_per_million=price.cache_write_per_million,
                valid_from=price.valid_from,
            )
        except ValidationError as exc:
            summary.skipped.append(f"price of {public_id} from {price.valid_from:%Y-%m-%d} ({' '.join(exc.messages)})")
        else:
            summary.created["prices"] += 1


def _demo_route(spec: dict[str, Any], summary: DemoLoadSummary) -> None:
    if Route.objects.filter(name=spec["name"]).exists():
        summary.kept += 1
        return
    by_id = LanguageModel.objects.select_related("provider").in_bulk(spec["chain"], field_name="public_id")
    missing = [public_id for public_id in spec["chain"] if public_id not in by_id]
    if missing:
        summary.skipped.append(f"route {spec['name']} (unknown models: {', '.join(missing)})")
        return
    chain = [by_id[public_id] for public_id in spec["chain"]]
    route = Route(
        name=spec["name"],
        description=spec.get("description", ""),
        temperature=spec.get("temperature"),
        max_tokens=spec.get("max_tokens"),
        system_prompt=spec.get("system_prompt", ""),
        strategy=spec.get("strategy", "fixed"),
        settings=spec.get("settings", {}),
        cache_enabled=spec.get("cache_enabled", False),
    )
    try:
        route_defaults_validate(
            temperature=route.temperature, max_tokens=route.max_tokens, system_prompt=route.system_prompt
        )
        route_chain_validate(models=chain, max_tokens=route.max_tokens)
    except ValidationError as exc:
        summary.skipped.append(f"route {spec['name']} ({' '.join(exc.messages)})")
        return
    route.full_clean()
    route.save()
    route_chain_set(route=route, models=chain)
    summary.created["routes"] += 1


def router_model_retrain(*, route: Route) -> None:
    """Start training the route's learned model on a worker, once the current transaction commits."""
    from routing.tasks import train_router_model_task

    transaction.on_commit(lambda: train_router_model_task.delay(route.pk))
