"""The cost calculator's page: a team's plan of a month's load, priced now (billing/dashboards/calculator.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from django_htmx.http import replace_url

from billing.dashboards.access import team_access
from billing.dashboards.calculator import calculator_page

if TYPE_CHECKING:
    from django.http import HttpResponse

    from switchyard.request_types import AuthenticatedHttpRequest

TEMPLATE = "billing/team/calculator.html"


@require_GET
@login_required
def team_calculator(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The page; for htmx, the figures after a change, or the whole calculator after one of its buttons."""
    access = team_access(request.user, slug)
    page = calculator_page(access=access, query=request.GET, now=timezone.now())
    context = {"access": access, "tab": "calculator", "tab_title": "Calculator", "page": page, "action": request.path}
    htmx = request.htmx
    if not htmx or htmx.history_restore_request:
        response = render(request, TEMPLATE, context)
    elif "action" in request.GET:
        # A button rewrote the rows: the address bar gets them as they now are, without the button.
        response = replace_url(render(request, f"{TEMPLATE}#calculator", context), f"{request.path}?{page.query}")
    else:
        response = render(request, f"{TEMPLATE}#calc-results", context)
    patch_vary_headers(response, ("HX-Request",))
    return response
