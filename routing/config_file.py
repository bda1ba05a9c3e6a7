"""The routing configuration (providers, models and their dated prices, routes with their strategies) as one file.

`manage.py export_config` writes it as YAML; `manage.py import_config FILE
[--dry-run]` applies one and prints what it changes, so a team can keep its
routing in version control while the database stays the source of truth:

- every field an admin edits is in the file, by name (a field added to a
  model later is exported and imported with no change here); providers are
  referred to by name, models by public id;
- an API key is never written out: a provider's `api_key_env` is, and a key
  stored in the database stays where it is;
- an import creates and updates what the file holds and leaves what it does
  not hold alone (the diff lists those as "not in the file");
- a dated price is history that bookings were made at: an import adds the
  price rows the database lacks and refuses one that would change an
  existing row (give the new price a new date instead);
- everything is checked as the admin checks it (each row's `full_clean`,
  a route's strategy settings against the models and routes there will
  be), in one transaction: a file with one fault changes nothing.
  A dry run makes the same changes and rolls them back.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep

FORMAT_VERSION = 1
# Kept by the database alone: identity, history, and the stored (encrypted) key.
_NOT_IN_FILE = {"id", "created_at", "updated_at", "api_key_encrypted", "provider", "model"}


class ConfigError(Exception):
    """The file cannot be applied; the message says where and why."""


def _fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if f.name not in _NOT_IN_FILE]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value


def _row(instance: models.Model) -> dict[str, Any]:
    return {f.name: _plain(f.value_from_object(instance)) for f in _fields(type(instance))}


def config_export() -> dict[str, Any]:
    """The whole routing configuration as plain data, in a stable order."""
    providers = [_row(p) for p in Provider.objects.order_by("name")]
    model_rows = []
    for model in LanguageModel.objects.select_related("provider").prefetch_related("prices").order_by("public_id"):
        row = {"provider": model.provider.name, **_row(model)}
        row["prices"] = [_row(price) for price in sorted(model.prices.all(), key=lambda p: p.valid_from)]
        model_rows.append(row)
    routes = []
    for route in Route.objects.prefetch_related("steps__model").order_by("name"):
        row = _row(route)
        row["chain"] = [step.model.public_id for step in route.steps.all()]
        routes.append(row)
    return {"version": FORMAT_VERSION, "providers": providers, "models": model_rows, "routes": routes}


def config_import(data: Any, *, dry_run: bool) -> list[str]:
    """Apply the configuration `data` (as config_export gives it); the changes, one line each.

    Raises ConfigError, having changed nothing, when any part cannot be applied.
    """
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ConfigError(f"Not a Switchyard configuration file of version {FORMAT_VERSION} ('version: 1' first).")
    for section in ("providers", "models", "routes"):
        if not isinstance(data.get(section, []), list):
            raise ConfigError(f"'{section}' must be a list.")
    changes: list[str] = []
    with transaction.atomic():
        providers = {p.name: p for p in Provider.objects.all()}
        for row in data.get("providers", []):
            providers[_key(row, "name", "provider")] = _upsert(Provider, providers, "name", row, {}, changes)
        models_by_id = {m.public_id: m for m in LanguageModel.objects.all()}
        for row in data.get("models", []):
            public_id = _key(row, "public_id", "model")
            fields = {k: v for k, v in row.items() if k not in ("provider", "prices")}
            provider = providers.get(row.get("provider"))
            if provider is None:
                raise ConfigError(f"Model {public_id}: no provider named {row.get('provider')!r}.")
            model = _upsert(LanguageModel, models_by_id, "public_id", fields, {"provider": provider}, changes)
            models_by_id[public_id] = model
            _prices(model, row.get("prices", []), changes)
        routes = {r.name: r for r in Route.objects.all()}
        existed = set(routes)
        chains: dict[str, list[str]] = {}
        settings: dict[str, Any] = {}
        for row in data.get("routes", []):
            name = _key(row, "name", "route")
            fields = {k: v for k, v in row.items() if k not in ("chain", "settings")}
            if name not in routes or "settings" in row:
                settings[name] = row.get("settings", {})
            routes[name] = _upsert(Route, routes, "name", fields, {}, changes, fields_only=True)
            chains[name] = list(row.get("chain", []))
        # The strategy settings are checked once every route is in place: a rule may name a later one.
        for name, chain in chains.items():
            _chain(routes[name], chain, models_by_id, changes)
            _route_settings(routes[name], settings.get(name, routes[name].settings), changes, name in existed)
        changes.extend(_absent(providers.keys(), data.get("providers", []), "name", "provider"))
        changes.extend(_absent(models_by_id.keys(), data.get("models", []), "public_id", "model"))
        changes.extend(_absent(routes.keys(), data.get("routes", []), "name", "route"))
        if dry_run:
            transaction.set_rollback(True)
    return changes


def _key(row: Any, field: str, what: str) -> str:
    if not isinstance(row, dict) or not isinstance(row.get(field), str) or not row[field]:
        raise ConfigError(f"Each {what} needs a '{field}': {row!r:.200}")
    return str(row[field])


def _upsert(
    model: type[Any],
    existing: dict[str, Any],
    key_field: str,
    row: dict[str, Any],
    relations: dict[str, Any],
    changes: list[str],
    fields_only: bool = False,
) -> Any:
    key = row[key_field]
    what = f"{model._meta.verbose_name} {key}"
    known = {f.name: f for f in _fields(model)}
    if unknown := set(row) - set(known):
        raise ConfigError(f"{what.capitalize()}: unknown field {sorted(unknown)[0]!r}.")
    created = key not in existing
    instance: models.Model = model(**relations) if created else existing[key]
    diff = []
    for name, value in row.items():
        field = known[name]
        try:
            new = field.to_python(value)
        except ValidationError as exc:
            raise ConfigError(f"{what.capitalize()}: {name}: {' '.join(exc.messages)}") from None
        old = field.value_from_object(instance)
        if created or old != new:
            if not created:
                diff.append(f"{name} {_plain(old)!r} → {_plain(new)!r}")
            setattr(instance, name, new)
    for name, value in relations.items():
        if not created and getattr(instance, name) != value:
            diff.append(f"{name} → {value}")
            setattr(instance, name, value)
    if created or diff:
        _checked(instance, what.capitalize(), fields_only=fields_only)
        instance.save()
        changes.append(f"+ {what}" if created else f"~ {what}: {'; '.join(diff)}")
    return instance


def _checked(instance: models.Model, what: str, *, fields_only: bool = False) -> None:
    """The admin's checks: every field's, then the row's own (`clean`) unless `fields_only`."""
    try:
        if fields_only:
            instance.clean_fields()
        else:
            instance.full_clean(validate_unique=False)
    except ValidationError as exc:
        messages = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
        raise ConfigError(f"{what}: {messages}") from None


def _route_settings(route: Route, settings: Any, changes: list[str], existed: bool) -> None:
    old = route.settings
    route.settings = settings
    # Checked, the settings take their canonical form: compared in it, so an unchanged file shows no change.
    _checked(route, f"Route {route.name}")
    if route.settings != old:
        route.save(update_fields=["settings"])
        if existed:
            changes.append(f"~ route {route.name}: settings {old} → {route.settings}")


def _prices(model: LanguageModel, rows: Any, changes: list[str]) -> None:
    if not isinstance(rows, list):
        raise ConfigError(f"Model {model.public_id}: 'prices' must be a list.")
    existing = {price.valid_from: price for price in model.prices.all()}
    for row in rows:
        if not isinstance(row, dict) or "valid_from" not in row:
            raise ConfigError(f"Model {model.public_id}: each price needs a 'valid_from'.")
        price = ModelPrice(model=model)
        for name, value in row.items():
            field = next((f for f in _fields(ModelPrice) if f.name == name), None)
            if field is None:
                raise ConfigError(f"Model {model.public_id}: a price has an unknown field {name!r}.")
            try:
                setattr(price, name, field.to_python(value))
            except ValidationError as exc:
                raise ConfigError(f"Model {model.public_id}: price {name}: {' '.join(exc.messages)}") from None
        when = f"{model.public_id} from {_plain(price.valid_from)}"
        old = existing.get(price.valid_from)
        if old is None:
            _checked(price, f"Price of {when}")
            price.save()
            changes.append(f"+ price of {when}: in {price.input_per_million}, out {price.output_per_million}")
        elif any(f.value_from_object(old) != f.value_from_object(price) for f in _fields(ModelPrice)):
            raise ConfigError(
                f"The price of {when} differs from the one calls were booked at; a price is changed by adding "
                "one with a new valid_from, never by rewriting a past one."
            )


def _chain(route: Route, chain: list[str], models_by_id: dict[str, LanguageModel], changes: list[str]) -> None:
    if missing := [m for m in chain if m not in models_by_id]:
        raise ConfigError(f"Route {route.name}: no model {missing[0]!r}.")
    old = [step.model.public_id for step in route.steps.select_related("model").order_by("position", "pk")]
    if old == chain:
        return
    route.steps.all().delete()
    RouteStep.objects.bulk_create(
        RouteStep(route=route, model=models_by_id[m], position=position) for position, m in enumerate(chain, 1)
    )
    changes.append(f"~ route {route.name}: chain {' → '.join(old) or '(empty)'} ⇒ {' → '.join(chain) or '(empty)'}")


def _absent(keys: Any, rows: list[Any], field: str, what: str) -> list[str]:
    named = {row.get(field) for row in rows if isinstance(row, dict)}
    return [f"  {what} {key}: not in the file, kept" for key in sorted(keys) if key not in named]
