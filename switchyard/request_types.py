"""What the type checker knows of a view's request beyond HttpRequest.

django-htmx's middleware gives every request `htmx`; behind `login_required`
the user is a signed-in one. django-htmx 1.29 has no such class of its own.
Views import these under TYPE_CHECKING only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """A request behind `login_required`."""

    user: User
    auser: Callable[[], Awaitable[User]]
