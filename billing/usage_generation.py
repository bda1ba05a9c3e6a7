"""Realistic usage records in bulk, for benchmarks and for trying the dashboards at size (`manage.py generate_usage`).

Each record is built as the worker books a call (billing/services.py:
usage_record_new from a call spec and its booking), so it is priced by the
dated price book of the call's moment, with cached input, cache writes and
reasoning tokens at their own prices. The mix: calls to routes (falling
back along their chains now and then) and to models by id, streamed and
not, errors and cancellations, calls to a model with no price. The records
are inserted in batches, then their hour and day rollups are rebuilt from
them (billing/rollups/build.py), so that `check_rollups` finds them equal.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.utils import timezone

from billing.models import ApiKey, Team, TeamMembership, UsageRecord
from billing.rollups.build import day_rollups_rebuild, rollups_rebuild
from billing.services import UsageBooking, api_key_hash, usage_record_new
from routing.calls.spec import CallSpec
from routing.catalog import Catalog, CatalogModel, get_catalog
from routing.models import LanguageModel, Provider
from routing.providers.errors import ErrorKind
from routing.providers.types import ChatRequest, Message, ToolSpec

PREFIX = "gen"
KEYS_PER_USER = 2
# The model that stands for one booked with no price, when the registry has none.
UNPRICED_PROVIDER = "generated"
UNPRICED_MODEL = f"{UNPRICED_PROVIDER}/unpriced"
# Shares of the calls; the rest are calls to a route that its first model answered.
DIRECT_SHARE = 0.25
FALLBACK_SHARE = 0.06
ERROR_SHARE = 0.04
CANCELLED_SHARE = 0.01
UNPRICED_SHARE = 0.01
STREAMED_SHARE = 0.6
PLAYGROUND_SHARE = 0.08
FAILURES = (ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE)
# Shares of the calls that send tools, or an image, where their model takes them (the savings page counts apart
# the calls a model without them could not have served).
TOOLS_SHARE = 0.08
VISION_SHARE = 0.03
PLAIN = (Message(role="user"),)
WITH_IMAGE = (Message(role="user", images=("data:image/png;base64,AA==",)),)
TOOLS = (ToolSpec(name="lookup"),)


@dataclass(frozen=True)
class Cast:
    """Who calls: each user is a member of one team and has KEYS_PER_USER keys there."""

    teams: list[int]
    # (user id, team id, key ids) per user.
    users: list[tuple[int, int, list[int]]]


@dataclass(frozen=True)
class Generated:
    records: int
    rollups: int
    day_rollups: int
    since: dt.datetime
    until: dt.datetime
    seconds_inserting: float
    seconds_rolling_up: float


def cast_ensure(*, teams: int, users: int) -> Cast:
    """Teams gen-team-N, users gen-user-N spread over them (the first of each team its owner) and their keys.

    Those that exist already are kept, so generating again adds calls to the same people.
    """
    if teams < 1 or users < teams:
        raise ValueError("At least one team, and at least as many users as teams.")
    User = get_user_model()
    with transaction.atomic():
        team_names = [f"{PREFIX}-team-{n:03d}" for n in range(teams)]
        found = dict(Team.objects.filter(slug__in=team_names).values_list("slug", "pk"))
        Team.objects.bulk_create(
            [Team(name=f"Generated team {n}", slug=slug) for n, slug in enumerate(team_names) if slug not in found]
        )
        team_ids = dict(Team.objects.filter(slug__in=team_names).values_list("slug", "pk"))
        user_names = [f"{PREFIX}-user-{n:04d}" for n in range(users)]
        found = dict(User.objects.filter(username__in=user_names).values_list("username", "pk"))
        # An unusable password: generated people never sign in.
        User.objects.bulk_create([User(username=name, password="!") for name in user_names if name not in found])
        user_ids = dict(User.objects.filter(username__in=user_names).values_list("username", "pk"))
        cast_users = []
        memberships, keys = [], []
        members = set(TeamMembership.objects.filter(user_id__in=user_ids.values()).values_list("user_id", "team_id"))
        keyed = set(ApiKey.objects.filter(user_id__in=user_ids.values()).values_list("user_id", flat=True))
        for n, name in enumerate(user_names):
            user_id, team_id = user_ids[name], team_ids[team_names[n % teams]]
            if (user_id, team_id) not in members:
                role = TeamMembership.Role.OWNER if n < teams else TeamMembership.Role.MEMBER
                memberships.append(TeamMembership(team_id=team_id, user_id=user_id, role=role))
            if user_id not in keyed:
                for k in range(KEYS_PER_USER):
                    raw = secrets.token_urlsafe(32)
                    keys.append(
                        ApiKey(
                            user_id=user_id, team_id=team_id, name=f"key {k}", prefix=raw[:8], hashed=api_key_hash(raw)
                        )
                    )
        TeamMembership.objects.bulk_create(memberships)
        ApiKey.objects.bulk_create(keys)
        key_ids: dict[int, list[int]] = {}
        for key_id, user_id in ApiKey.objects.filter(user_id__in=user_ids.values()).values_list("pk", "user_id"):
            key_ids.setdefault(user_id, []).append(key_id)
        for n, name in enumerate(user_names):
            cast_users.append((user_ids[name], team_ids[team_names[n % teams]], sorted(key_ids[user_ids[name]])))
    return Cast(teams=[team_ids[name] for name in team_names], users=cast_users)


def unpriced_model_ensure(catalog: Catalog) -> Catalog:
    """The catalog, with a model that has no price (disabled, never called) if it had none."""
    if any(not model.free and not model.prices for model in catalog.models.values()):
        return catalog
    provider, _ = Provider.objects.get_or_create(
        name=UNPRICED_PROVIDER,
        defaults={"kind": Provider.Kind.SIMULATED, "enabled": False, "display_name": "Generated usage"},
    )
    LanguageModel.objects.get_or_create(
        public_id=UNPRICED_MODEL,
        defaults={"provider": provider, "upstream_name": "unpriced", "context_window": 8192, "max_output_tokens": 4096},
    )
    # The registry's signals moved its version: the next snapshot has the model.
    return get_catalog()


class CallMaker:
    """One record after another, as the booking path writes them, from a seeded random source."""

    def __init__(self, catalog: Catalog, cast: Cast, rng: random.Random) -> None:
        self.rng = rng
        self.cast = cast
        self.models = sorted(catalog.models.values(), key=lambda model: model.public_id)
        self.by_id = {model.public_id: model for model in self.models}
        routes = sorted((route for route in catalog.routes.values() if route.chain), key=lambda route: route.name)
        self.routes = [(route.name, [self.by_id[name] for name in route.chain]) for route in routes]
        self.unpriced = [model for model in self.models if not model.free and not model.prices]
        # A few models take most calls, as in real use: weights fall with each model's rank.
        # Cumulative, so that each draw is a bisection rather than a sum over every weight.
        self.model_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(self.models))))
        self.route_weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(self.routes))))
        self.user_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.5 for rank in range(len(cast.users))))

    def record(self, call_id: str, created_at: dt.datetime) -> UsageRecord:
        rng = self.rng
        user_id, team_id, key_ids = rng.choices(self.cast.users, cum_weights=self.user_weights)[0]
        playground = rng.random() < PLAYGROUND_SHARE
        streamed = playground or rng.random() < STREAMED_SHARE
        route, chain = "", list[CatalogModel]()
        if rng.random() < UNPRICED_SHARE and self.unpriced:
            model = rng.choice(self.unpriced)
        elif rng.random() < DIRECT_SHARE or not self.routes:
            model = rng.choices(self.models, cum_weights=self.model_weights)[0]
        else:
            route, chain = rng.choices(self.routes, cum_weights=self.route_weights)[0]
            model = chain[0]
        attempts = []
        if len(chain) > 1 and rng.random() < FALLBACK_SHARE:
            failed, model = chain[0], chain[rng.randrange(1, len(chain))]
            kind = rng.choice(FAILURES)
            attempts.append({"model": failed.public_id, "provider": failed.provider_name, "outcome": kind.value})
        tools = TOOLS if "tools" in model.capabilities and rng.random() < TOOLS_SHARE else ()
        messages = WITH_IMAGE if "vision" in model.capabilities and rng.random() < VISION_SHARE else PLAIN
        spec = CallSpec(
            call_id=call_id,
            created_at=created_at,
            requested=route or model.public_id,
            chain=tuple(m.public_id for m in chain) or (model.public_id,),
            request=ChatRequest(messages=messages, stream=streamed, tools=tools),
            route=route,
            user_id=user_id,
            team_id=team_id,
            api_key_id=None if playground else rng.choice(key_ids),
            source="playground" if playground else "api",
        )
        return usage_record_new(self._booking(spec, model, attempts, streamed))

    def _booking(
        self, spec: CallSpec, model: CatalogModel, attempts: list[dict[str, str]], streamed: bool
    ) -> UsageBooking:
        rng = self.rng
        outcome = rng.random()
        input_tokens = int(rng.lognormvariate(6.5, 1.0)) + 5
        latency = int(rng.lognormvariate(6.8, 0.7)) + 40
        ttft = int(latency * rng.uniform(0.1, 0.4)) if streamed else None
        if outcome < ERROR_SHARE:
            kind = rng.choice(FAILURES)
            attempts.append({"model": model.public_id, "provider": model.provider_name, "outcome": kind.value})
            # Most failed calls never got an answer: no model is booked; some failed midway through a stream.
            if not streamed or rng.random() < 0.7:
                return UsageBooking(
                    spec=spec,
                    model=None,
                    status=UsageRecord.Status.ERROR,
                    attempts=attempts,
                    input_tokens=0,
                    output_tokens=0,
                    tokens_estimated=False,
                    latency_ms=latency,
                    ttft_ms=None,
                    error_kind=kind.value,
                    finish_reason="",
                )
            status, error_kind, finish = UsageRecord.Status.ERROR, kind.value, ""
        elif outcome < ERROR_SHARE + CANCELLED_SHARE:
            attempts.append({"model": model.public_id, "provider": model.provider_name, "outcome": "cancelled"})
            status, error_kind, finish = UsageRecord.Status.CANCELLED, "", ""
        else:
            attempts.append({"model": model.public_id, "provider": model.provider_name, "outcome": "ok"})
            status, error_kind, finish = UsageRecord.Status.OK, "", "length" if rng.random() < 0.03 else "stop"
        output_tokens = int(rng.lognormvariate(5.5, 0.9)) + 1
        if status != UsageRecord.Status.OK:
            output_tokens //= 3
        cached = cache_write = reasoning = 0
        price = model.prices[0] if model.prices else None
        if price is not None and price.cached_input_per_million is not None and rng.random() < 0.3:
            cached = int(input_tokens * rng.uniform(0.2, 0.9))
        if price is not None and price.cache_write_per_million is not None and rng.random() < 0.1:
            cache_write = int((input_tokens - cached) * rng.uniform(0.1, 0.8))
        if "reason" in spec.route or "pro" in model.public_id:
            reasoning = int(output_tokens * rng.uniform(0.2, 0.7))
        return UsageBooking(
            spec=spec,
            model=model,
            status=status,
            attempts=attempts,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            tokens_estimated=False,
            latency_ms=latency,
            ttft_ms=ttft,
            error_kind=error_kind,
            finish_reason=finish,
            cached_input_tokens=cached,
            cache_write_tokens=cache_write,
            reasoning_tokens=reasoning,
        )


def records_insert(records: list[UsageRecord]) -> None:
    """Insert new records in one transaction, as bulk_create would, at a fraction of its cost per row.

    Django's bulk_create prepares each of a record's 31 values through its
    field, most of its time at millions of rows; here only the values that
    need it (times, JSON) are adapted, the rest go to the driver as they are.
    """
    fields = [field for field in UsageRecord._meta.concrete_fields if not field.primary_key]
    adapters: list[Callable[[Any], Any] | None] = []
    for field in fields:
        if isinstance(field, models.DateTimeField):
            adapters.append(connection.ops.adapt_datetimefield_value)
        elif isinstance(field, models.JSONField):
            adapters.append(functools.partial(field.get_db_prep_save, connection=connection))
        else:
            adapters.append(None)
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(UsageRecord._meta.db_table)} ({', '.join(quote(str(field.column)) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    pairs = list(zip((field.attname for field in fields), adapters, strict=True))
    rows = [
        tuple(getattr(record, name) if adapt is None else adapt(getattr(record, name)) for name, adapt in pairs)
        for record in records
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def usage_generate(
    *,
    records: int,
    teams: int,
    users: int,
    days: int = 90,
    seed: int = 0,
    until: dt.datetime | None = None,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> Generated:
    """Insert `records` usage records spread evenly over the `days` before `until`, then rebuild their rollups.

    The records of one seed are the same each time but for their request ids,
    so that generating twice adds calls rather than colliding.
    """
    if records < 1 or days < 1:
        raise ValueError("At least one record over at least one day.")
    until = until or timezone.now()
    since = until - dt.timedelta(days=days)
    rng = random.Random(seed)
    cast = cast_ensure(teams=teams, users=users)
    catalog = unpriced_model_ensure(get_catalog())
    if not catalog.models:
        raise ValueError("The registry has no models: load some first (manage.py load_demo).")
    maker = CallMaker(catalog, cast, rng)
    run = f"{PREFIX}-{secrets.token_hex(4)}"
    step = (until - since) / records
    started = time.monotonic()
    done = 0
    while done < records:
        count = min(batch_size, records - done)
        batch = [maker.record(f"{run}-{n}", since + step * (n + rng.random())) for n in range(done, done + count)]
        records_insert(batch)
        done += count
        if progress is not None:
            progress(done)
    inserted = time.monotonic()
    rollups = rollups_rebuild(since, until)
    day_rollups = day_rollups_rebuild(since, until)
    return Generated(
        records=records,
        rollups=rollups,
        day_rollups=day_rollups,
        since=since,
        until=until,
        seconds_inserting=inserted - started,
        seconds_rolling_up=time.monotonic() - inserted,
    )
