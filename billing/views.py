"""Pages of the billing app: a user's API keys.

Each page is one template; an htmx request gets its `#keys` partial, so the
same views serve the plain HTML forms and their htmx-enhanced versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from billing.forms import ApiKeyCreateForm
from billing.models import ApiKey
from billing.services import api_key_create, api_key_revoke

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet

    from switchyard.request_types import AuthenticatedHttpRequest


def _keys_of(user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user).select_related("team")


def _key_of(user: User, key_id: int) -> ApiKey:
    """The key `key_id` if `user` owns it; another user's key is a 404, as if it did not exist."""
    return get_object_or_404(ApiKey, pk=key_id, user=user)


def _keys_page(request: AuthenticatedHttpRequest, form: ApiKeyCreateForm, **context: Any) -> HttpResponse:
    template = "billing/keys.html#keys" if request.htmx else "billing/keys.html"
    return render(
        request,
        template,
        {
            "form": form,
            "keys": _keys_of(request.user),
            "api_base_url": request.build_absolute_uri("/v1"),
            **context,
        },
    )


# The page that shows a new key must not be kept by the browser or a proxy:
# the plain key appears in it once and never again.
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def keys(request: AuthenticatedHttpRequest) -> HttpResponse:
    """List the user's keys (GET) or create one (POST) and show its plain key once."""
    if request.method != "POST":
        return _keys_page(request, ApiKeyCreateForm(user=request.user))
    form = ApiKeyCreateForm(request.POST, user=request.user)
    if not form.is_valid():
        return _keys_page(request, form)
    key, plain_key = api_key_create(user=request.user, name=form.cleaned_data["name"], team=form.cleaned_data["team"])
    return _keys_page(request, ApiKeyCreateForm(user=request.user), created=key, plain_key=plain_key)


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def key_revoke(request: AuthenticatedHttpRequest, key_id: int) -> HttpResponse:
    """Ask for confirmation (GET), then revoke the key (POST): /v1 refuses it from then on."""
    key = _key_of(request.user, key_id)
    if request.method != "POST":
        return render(request, "billing/key_revoke.html", {"key": key, "cancel_url": reverse("billing-keys")})
    api_key_revoke(key=key)
    if request.htmx:
        return _keys_page(request, ApiKeyCreateForm(user=request.user), revoked=key)
    messages.success(request, f"The key {key.prefix}… ({key.name or 'unnamed'}) is revoked: calls with it are refused.")
    return redirect("billing-keys")
