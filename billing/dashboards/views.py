"""A team's dashboards: the overview page, its chart partials, and one call's record.

Each view is a few lines: access decides what the viewer may read, the
filters come from the URL, the selectors read the rollups. A filter change
made with htmx gets the page's #team-view partial; each chart then loads
its own partial, so a page shows before its slowest chart is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from billing.dashboards import selectors
from billing.dashboards.access import UsageScope, record_page, team_access, teams_of
from billing.dashboards.filters import Filters, FiltersForm
from billing.dashboards.overview import chart_figures, charts_for
from billing.dashboards.sources import card_rollups
from routing.selectors import model_and_route_names
from routing.trace import trace_view

if TYPE_CHECKING:
    from switchyard.request_types import AuthenticatedHttpRequest


def partial_or_page(
    request: AuthenticatedHttpRequest, template: str, partial: str, context: dict[str, Any]
) -> HttpResponse:
    """The page, or only its `partial` for an htmx request (but the page for htmx restoring its history)."""
    htmx = request.htmx
    name = f"{template}#{partial}" if htmx and not htmx.history_restore_request else template
    response = render(request, name, context)
    # One URL, two bodies: a cache must tell them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


def team_context(request: AuthenticatedHttpRequest, access: UsageScope, form: FiltersForm, tab: str) -> dict[str, Any]:
    """What every tab of a team's pages (and the personal page) shows around its content: the frame and the filters."""
    return {
        "access": access,
        "form": form,
        "filters": form.filters() if form.is_valid() else None,
        "tab": tab,
        "action": request.path,
        "choices": model_and_route_names(),
    }


@require_GET
@login_required
def teams(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The teams whose dashboards the viewer may open."""
    return render(request, "billing/team/list.html", {"teams": teams_of(request.user).order_by("name")})


@require_GET
@login_required
def team(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """A team's overview: totals of the period, then each chart, loaded as its own partial."""
    access = team_access(request.user, slug)
    form = FiltersForm(request.GET, access=access)
    context = team_context(request, access, form, "overview")
    context["show_chart_options"] = True
    filters: Filters | None = context["filters"]
    if filters is not None:
        context["totals"] = selectors.totals(card_rollups(access, filters))
        context["charts"] = charts_for(access)
    return partial_or_page(request, "billing/team/overview.html", "team-view", context)


@require_GET
@login_required
def team_chart(request: AuthenticatedHttpRequest, slug: str, chart: str) -> HttpResponse:
    """One chart of the overview, for the filters in the URL."""
    access = team_access(request.user, slug)
    if chart not in charts_for(access):
        raise Http404("No such chart.")
    form = FiltersForm(request.GET, access=access)
    if not form.is_valid():
        return render(request, "billing/team/_filter_errors.html", {"form": form}, status=400)
    filters = form.filters()
    context = {"access": access, "filters": filters, "chart": chart, **chart_figures(access, filters, chart)}
    return render(request, "billing/team/chart.html", context)


@require_GET
@login_required
def call_record(request: AuthenticatedHttpRequest, request_id: str) -> HttpResponse:
    """One stable address for a call's record (the playground links to it): its page, where the viewer may read it."""
    return redirect(record_page(request.user, request_id))


@require_GET
@login_required
def team_record(request: AuthenticatedHttpRequest, slug: str, request_id: str) -> HttpResponse:
    """One call's record: what it cost, at which prices, which models were tried and why."""
    access = team_access(request.user, slug)
    record = get_object_or_404(access.records().select_related("user", "api_key"), request_id=request_id)
    back = reverse("billing-team", args=[access.team.slug])
    context = {"access": access, "record": record, "back": back, "tab": "", "trace": trace_view(record.trace)}
    return render(request, "billing/team/record.html", context)
