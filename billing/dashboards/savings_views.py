"""A team's savings tab (/teams/<slug>/savings/): its routes against one model, and a period replayed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_GET

from billing.dashboards.access import team_access
from billing.dashboards.filters import FiltersForm
from billing.dashboards.views import partial_or_page, team_context
from billing.money.savings import MoneyForm, money_figures
from routing.catalog import get_catalog

if TYPE_CHECKING:
    from django.http import HttpResponse

    from switchyard.request_types import AuthenticatedHttpRequest


@require_GET
@login_required
def team_savings(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The period's calls against one model, and replayed under a route or model, each beside what they cost."""
    access = team_access(request.user, slug)
    form = FiltersForm(request.GET, access=access)
    context = team_context(request, access, form, "savings")
    catalog = get_catalog()
    choices = MoneyForm(request.GET, catalog=catalog)
    context["money_form"] = choices
    if context["filters"] is not None and choices.is_valid():
        context.update(money_figures(access, context["filters"], catalog, choices.cleaned_data))
    return partial_or_page(request, "billing/team/savings.html", "team-view", context)
