"""An in-process snapshot of the registry for the hot path of every call.

Loading providers, models, prices and routes costs a handful of queries; a
call needs them in well under a millisecond. Each process keeps a snapshot
and reloads it when the registry version in Redis moves: every save or delete
of a registry row bumps it (routing/signals.py), so an admin's edit reaches
every web process and worker on their next call.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from fastpath.single_flight import SingleFlight
from routing.providers.types import ModelConfig
from switchyard.redis_clients import get_redis, get_resp

if TYPE_CHECKING:
    from routing.learned.router import LearnedRouter

VERSION_KEY = "sy:registry:version"


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One row of a model's price book; a cache price of None is the input price."""

    valid_from: dt.datetime
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None

    @property
    def cached_input_price(self) -> Decimal:
        """What a million input tokens read from the prompt cache cost."""
        return self.input_per_million if self.cached_input_per_million is None else self.cached_input_per_million

    @property
    def cache_write_price(self) -> Decimal:
        """What a million input tokens written to the prompt cache cost."""
        return self.input_per_million if self.cache_write_per_million is None else self.cache_write_per_million


@dataclass(frozen=True, slots=True)
class CatalogModel:
    public_id: str
    display_name: str
    provider_name: str
    provider_kind: str
    provider_enabled: bool
    enabled: bool
    upstream_name: str
    base_url: str
    api_key_env: str
    api_key_encrypted: str
    timeout_seconds: float
    connect_timeout_seconds: float
    context_window: int
    max_output_tokens: int
    capabilities: frozenset[str]
    options: dict[str, Any]
    created: dt.datetime
    free: bool = False
    provider_keeps_no_data: bool = False
    # Newest first.
    prices: tuple[PriceRow, ...] = ()
    # The provider's circuit breaker settings (routing/resilience/circuits.py).
    circuit_failures: int = 3
    circuit_window_seconds: float = 60.0
    circuit_cooldown_seconds: float = 30.0

    @property
    def usable(self) -> bool:
        return self.enabled and self.provider_enabled

    def price_at(self, when: dt.datetime) -> PriceRow | None:
        for row in self.prices:
            if row.valid_from <= when:
                return row
        return None

    def config(self) -> ModelConfig:
        """The adapter's view of this model, with the API key resolved (decrypted) now."""
        from routing.models import Provider

        provider = Provider(api_key_env=self.api_key_env, api_key_encrypted=self.api_key_encrypted)
        return ModelConfig(
            provider_name=self.provider_name,
            provider_kind=self.provider_kind,
            model_id=self.public_id,
            upstream_name=self.upstream_name,
            base_url=self.base_url,
            api_key=provider.api_key(),
            timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            context_window=self.context_window,
            max_output_tokens=self.max_output_tokens,
            options=self.options,
            capabilities=self.capabilities,
        )


@dataclass(frozen=True, slots=True)
class CatalogRoute:
    name: str
    description: str
    enabled: bool
    temperature: float | None
    max_tokens: int | None
    system_prompt: str
    chain: tuple[str, ...]
    created: dt.datetime
    soft_landing: bool = False
    strategy: str = "fixed"
    settings: dict[str, Any] = field(default_factory=dict)
    retry_attempts: int = 0
    retry_base_delay_seconds: float = 0.5
    cache_enabled: bool = False
    cache_ttl_seconds: int = 3600
    cache_max_temperature: float | None = 1.0


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int
    models: dict[str, CatalogModel] = field(default_factory=dict)
    routes: dict[str, CatalogRoute] = field(default_factory=dict)
    # The strategies some route uses: a call fetches what a strategy reads only when one uses it.
    strategies: frozenset[str] = frozenset()
    # Each learned route's newest trained model (routing/strategies/learned.py).
    learned: dict[str, LoadedRouter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadedRouter:
    version: int
    router: LearnedRouter


def _load(version: int) -> Catalog:
    from routing.models import LanguageModel, ModelPrice, RouteStep

    prices: dict[int, list[PriceRow]] = {}
    for price in ModelPrice.objects.order_by("model_id", "-valid_from"):
        prices.setdefault(price.model_id, []).append(
            PriceRow(
                price.valid_from,
                price.input_per_million,
                price.output_per_million,
                price.cached_input_per_million,
                price.cache_write_per_million,
            )
        )
    models: dict[str, CatalogModel] = {}
    public_ids: dict[int, str] = {}
    for m in LanguageModel.objects.select_related("provider"):
        p = m.provider
        public_ids[m.pk] = m.public_id
        models[m.public_id] = CatalogModel(
            public_id=m.public_id,
            display_name=m.display_name or m.public_id,
            provider_name=p.name,
            provider_kind=p.kind,
            provider_enabled=p.enabled,
            enabled=m.enabled,
            upstream_name=m.upstream_name,
            base_url=p.base_url.rstrip("/"),
            api_key_env=p.api_key_env,
            api_key_encrypted=p.api_key_encrypted,
            timeout_seconds=p.timeout_seconds,
            connect_timeout_seconds=p.connect_timeout_seconds,
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            capabilities=frozenset(m.capabilities or ()),
            options={**(p.options or {}), **(m.options or {})},
            created=m.created_at,
            free=m.free,
            provider_keeps_no_data=p.keeps_no_data,
            prices=tuple(prices.get(m.pk, ())),
            circuit_failures=p.circuit_failures,
            circuit_window_seconds=p.circuit_window_seconds,
            circuit_cooldown_seconds=p.circuit_cooldown_seconds,
        )
    chains: dict[int, list[str]] = {}
    for step in RouteStep.objects.order_by("route_id", "position", "pk"):
        chains.setdefault(step.route_id, []).append(public_ids[step.model_id])
    from routing.models import Route

    all_routes = list(Route.objects.all())
    names = frozenset(models) | frozenset(r.name for r in all_routes)
    routes = {
        r.name: CatalogRoute(
            name=r.name,
            description=r.description,
            enabled=r.enabled,
            temperature=r.temperature,
            max_tokens=r.max_tokens,
            system_prompt=r.system_prompt,
            chain=tuple(chains.get(r.pk, ())),
            created=r.created_at,
            soft_landing=r.soft_landing,
            **_strategy_of(r.strategy, r.settings, names),
            retry_attempts=r.retry_attempts,
            retry_base_delay_seconds=r.retry_base_delay_seconds,
            cache_enabled=r.cache_enabled,
            cache_ttl_seconds=r.cache_ttl_seconds,
            cache_max_temperature=r.cache_max_temperature,
        )
        for r in all_routes
    }
    strategies = frozenset(route.strategy for route in routes.values())
    learned = _learned_routers([r.pk for r in all_routes if routes[r.name].strategy == "learned"])
    return Catalog(version=version, models=models, routes=routes, strategies=strategies, learned=learned)


logger = logging.getLogger(__name__)

# Router models by primary key and training time: a version is deserialized once per process, not at every
# registry change. The time is part of the key because SQLite gives a deleted newest row's key to the next row.
_routers: dict[tuple[int, dt.datetime], LoadedRouter] = {}
# Versions this code cannot read, by the same key: read once, then passed over.
_unreadable: set[tuple[int, dt.datetime]] = set()


def _learned_routers(route_ids: list[int]) -> dict[str, LoadedRouter]:
    # scikit-learn is imported only by a process whose registry has a learned route.
    from routing.learned.router import LearnedRouter
    from routing.models import RouterModel

    if not route_ids:
        return {}
    newest = (
        RouterModel.objects.filter(route_id__in=route_ids)
        .order_by("route_id", "-version")
        .values_list("pk", "route__name", "version", "trained_at")
    )
    found: dict[str, LoadedRouter] = {}
    kept: set[tuple[int, dt.datetime]] = set()
    for pk, route, number, trained_at in newest:
        key = (pk, trained_at)
        if route in found or key in _unreadable:
            continue
        if key not in _routers:
            blob = RouterModel.objects.values_list("weights", flat=True).get(pk=pk)
            try:
                _routers[key] = LoadedRouter(number, LearnedRouter.from_bytes(bytes(blob)))
            except ValueError as exc:
                # Stored by another release, or damaged: the newest version that loads keeps routing.
                logger.warning(
                    "route %s: router model v%s cannot be loaded (%s); an older version routes", route, number, exc
                )
                _unreadable.add(key)
                continue
        kept.add(key)
        found[route] = _routers[key]
    # Older versions route no call any more: each would hold its 2 MB of weights for nothing.
    for gone in set(_routers) - kept:
        _routers.pop(gone, None)
    return found


def _strategy_of(name: str, settings: Any, names: frozenset[str]) -> dict[str, Any]:
    """A route's strategy and its settings, checked: a route saved without the admin's checks is refused, not run."""
    from routing.strategies.base import SettingsError
    from routing.strategies.registry import UnknownStrategy, settings_checked

    try:
        return {"strategy": name, "settings": settings_checked(name, settings, names)}
    except UnknownStrategy:
        return {"strategy": "", "settings": {"error": f"its strategy {name!r} is unknown"}}
    except SettingsError as exc:
        return {"strategy": "", "settings": {"error": f"its strategy settings are invalid ({exc})"}}


_current: Catalog | None = None
# The calls that find the registry changed at once share one reload.
_loads: SingleFlight[int, Catalog] = SingleFlight()
_lock = threading.Lock()


def _cached(version: int) -> Catalog | None:
    if _current is not None and _current.version == version:
        return _current
    return None


def _store(catalog: Catalog) -> Catalog:
    global _current
    with _lock:
        _current = catalog
    return catalog


def get_catalog(version: bytes | None = None) -> Catalog:
    """The registry as of `version` (the value of VERSION_KEY, when the caller already read it)."""
    number = int((get_redis().get(VERSION_KEY) if version is None else version) or 0)
    return _cached(number) or _store(_load(number))


async def aget_catalog(version: bytes | None = None) -> Catalog:
    """get_catalog for an event loop: the database only through a thread, and only when the registry changed."""
    number = int((await get_resp().execute("GET", VERSION_KEY) if version is None else version) or 0)
    return _cached(number) or _store(await _loads.run(number, lambda: sync_to_async(_load)(number)))


def forget() -> None:
    """Drop this process's snapshot: its next call loads the registry again."""
    global _current
    with _lock:
        _current = None


def bump_version() -> None:
    forget()
    get_redis().incr(VERSION_KEY)
