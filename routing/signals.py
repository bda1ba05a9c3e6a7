"""Keep every process's registry snapshot (routing/catalog.py) in step with the database."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from routing import catalog

logger = logging.getLogger(__name__)


_warned = False


def _bump() -> None:
    global _warned
    try:
        catalog.bump_version()
    except redis.RedisError as exc:
        if not _warned:
            _warned = True
            logger.warning("Redis unreachable (%s): other processes keep their registry snapshot", exc)


def registry_changed(**_: Any) -> None:
    # This process forgets its snapshot at once, so that it reads its own
    # change (tests inside one transaction too); the version moves only once
    # the change is committed. Moved before, it would let another process load
    # the registry as it still was and keep that under the new version, until
    # the next change: a call made just after a retrain would still be routed
    # by the model before it.
    catalog.forget()
    transaction.on_commit(_bump)


def connect() -> None:
    from routing.models import LanguageModel, ModelPrice, Provider, Route, RouterModel, RouteStep

    for model in (Provider, LanguageModel, ModelPrice, Route, RouteStep, RouterModel):
        post_save.connect(registry_changed, sender=model, dispatch_uid=f"registry-{model.__name__}-save")
        post_delete.connect(registry_changed, sender=model, dispatch_uid=f"registry-{model.__name__}-delete")
