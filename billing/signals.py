"""Keep every process's caches of billing rows in step with the database: API keys and spend caps."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from billing import api_auth
from billing.caps.rules import caps_changed
from billing.models import ApiKey, SpendCap


def key_changed(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    # A revoked or deleted key must stop working in every web process at once.
    if kwargs.get("created"):
        return
    api_auth.forget(instance.hashed)
    transaction.on_commit(lambda: api_auth.forget(instance.hashed))


def connect() -> None:
    post_save.connect(key_changed, sender=ApiKey, dispatch_uid="billing-apikey-save")
    post_delete.connect(key_changed, sender=ApiKey, dispatch_uid="billing-apikey-delete")
    post_save.connect(caps_changed, sender=SpendCap, dispatch_uid="billing-spendcap-save")
    post_delete.connect(caps_changed, sender=SpendCap, dispatch_uid="billing-spendcap-delete")
