"""Keep every process's caches of billing rows in step with the database: API keys and spend caps."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete

from billing import api_auth
from billing.caps.rules import caps_changed
from billing.models import ApiKey, RateLimit, SpendCap, Team
from billing.ratelimits.config import rate_limits_changed
from billing.rollups.maintain import rollups_orphan


def _forget_now_and_after_commit(hashes: list[str]) -> None:
    # After the commit too: a call between the two would cache the row as it was.
    api_auth.forget(hashes)
    transaction.on_commit(lambda: api_auth.forget(hashes))


def key_changed(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    # A revoked or deleted key must stop working in every web process at once.
    if not kwargs.get("created"):
        _forget_now_and_after_commit([instance.hashed])


def user_changed(sender: type[Any], instance: Any, **kwargs: Any) -> None:
    # A deactivated user's keys stop working at once (the cached principal does not know is_active).
    if not kwargs.get("created"):
        _forget_now_and_after_commit(list(ApiKey.objects.filter(user=instance).values_list("hashed", flat=True)))


# The records of a deleted user, key or team keep their figures with an empty subject: so do their rollups.
def user_deleted(sender: type[Any], instance: Any, **kwargs: Any) -> None:
    rollups_orphan("user_id", instance.pk)


def key_deleted(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    rollups_orphan("api_key_id", instance.pk)


def team_deleted(sender: type[Team], instance: Team, **kwargs: Any) -> None:
    rollups_orphan("team_id", instance.pk)


def connect() -> None:
    post_save.connect(key_changed, sender=ApiKey, dispatch_uid="billing-apikey-save")
    post_delete.connect(key_changed, sender=ApiKey, dispatch_uid="billing-apikey-delete")
    post_save.connect(user_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="billing-user-save")
    post_save.connect(caps_changed, sender=SpendCap, dispatch_uid="billing-spendcap-save")
    post_delete.connect(caps_changed, sender=SpendCap, dispatch_uid="billing-spendcap-delete")
    post_save.connect(rate_limits_changed, sender=RateLimit, dispatch_uid="billing-ratelimit-save")
    post_delete.connect(rate_limits_changed, sender=RateLimit, dispatch_uid="billing-ratelimit-delete")
    pre_delete.connect(user_deleted, sender=settings.AUTH_USER_MODEL, dispatch_uid="billing-user-delete")
    pre_delete.connect(key_deleted, sender=ApiKey, dispatch_uid="billing-apikey-pre-delete")
    pre_delete.connect(team_deleted, sender=Team, dispatch_uid="billing-team-delete")
