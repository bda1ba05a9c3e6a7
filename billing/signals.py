"""Keep the Redis cache of active API keys (billing/api_auth.py) in step with the database."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from billing import api_auth
from billing.models import ApiKey


def key_changed(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    # A revoked or deleted key must stop working in every web process at once.
    if kwargs.get("created"):
        return
    api_auth.forget(instance.hashed)
    transaction.on_commit(lambda: api_auth.forget(instance.hashed))


def connect() -> None:
    post_save.connect(key_changed, sender=ApiKey, dispatch_uid="billing-apikey-save")
    post_delete.connect(key_changed, sender=ApiKey, dispatch_uid="billing-apikey-delete")
