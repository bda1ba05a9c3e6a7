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
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from billing.dashboards import charts, selectors
from billing.dashboards.access import TeamAccess, team_access, teams_of
from billing.dashboards.caps import cap_usage
from billing.dashboards.filters import Filters, FiltersForm
from routing.models import LanguageModel, Route

if TYPE_CHECKING:
    from switchyard.request_types import AuthenticatedHttpRequest

# The chart partials of the overview, by the name in their URL; "member" ones break spend down by person.
CHARTS = ("spend", "tokens", "by-model", "by-route", "by-user", "by-key", "models", "caps", "expensive")
MEMBER_CHARTS = {"by-user", "by-key"}
EXPENSIVE_CALLS = 10


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


def filter_choices() -> dict[str, list[str]]:
    """Names offered in the model and route filters: the registry's."""
    return {
        "models": list(LanguageModel.objects.order_by("public_id").values_list("public_id", flat=True)),
        "routes": list(Route.objects.order_by("name").values_list("name", flat=True)),
    }


def team_context(request: AuthenticatedHttpRequest, access: TeamAccess, form: FiltersForm, tab: str) -> dict[str, Any]:
    """What every tab of a team's pages shows around its content: the frame and the filters."""
    return {
        "access": access,
        "form": form,
        "filters": form.filters() if form.is_valid() else None,
        "tab": tab,
        "action": request.path,
        "choices": filter_choices(),
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
        context["totals"] = selectors.totals(access.rollups().filter(filters.rollup_q()))
        context["charts"] = [c for c in CHARTS if access.sees_members or c not in MEMBER_CHARTS]
    return partial_or_page(request, "billing/team/overview.html", "team-view", context)


@require_GET
@login_required
def team_chart(request: AuthenticatedHttpRequest, slug: str, chart: str) -> HttpResponse:
    """One chart of the overview, for the filters in the URL."""
    access = team_access(request.user, slug)
    if chart not in CHARTS or (chart in MEMBER_CHARTS and not access.sees_members):
        raise Http404("No such chart.")
    form = FiltersForm(request.GET, access=access)
    if not form.is_valid():
        return render(request, "billing/team/_filter_errors.html", {"form": form}, status=400)
    filters = form.filters()
    context: dict[str, Any] = {"access": access, "filters": filters, "chart": chart}
    context.update(_chart_figures(access, filters, chart))
    return render(request, "billing/team/chart.html", context)


def _chart_figures(access: TeamAccess, filters: Filters, chart: str) -> dict[str, Any]:
    if chart in ("spend", "tokens"):
        rollups = access.member_rollups() if filters.stack in ("user", "key") else access.rollups()
        series = selectors.over_time(
            rollups.filter(filters.rollup_q()),
            since=filters.since,
            until=filters.until,
            bucket=filters.bucket,
            stack=filters.stack,
            metric=chart,
        )
        return {"figure": charts.over_time_chart(series, metric=chart), "empty": not series.values}
    if chart.startswith("by-"):
        dimension = chart.removeprefix("by-")
        rollups = access.member_rollups() if dimension in ("user", "key") else access.rollups()
        shares = selectors.spend_by(rollups.filter(filters.rollup_q()), dimension)
        return {"figure": charts.spend_by_chart(shares), "shares": shares, "dimension": dimension, "empty": not shares}
    if chart == "models":
        health = selectors.model_health(access.rollups().filter(filters.rollup_q()))
        return {"health": health, "empty": not health}
    if chart == "caps":
        usage = cap_usage(access)
        return {"caps": usage, "empty": not usage}
    calls = list(
        access.records()
        .filter(filters.record_q(), cost_usd__gt=0)
        .select_related("user")
        .order_by("-cost_usd", "-created_at")[:EXPENSIVE_CALLS]
    )
    return {"calls": calls, "empty": not calls}


@require_GET
@login_required
def team_record(request: AuthenticatedHttpRequest, slug: str, request_id: str) -> HttpResponse:
    """One call's record: what it cost, at which prices, which models were tried and why."""
    access = team_access(request.user, slug)
    record = get_object_or_404(access.records().select_related("user", "api_key"), request_id=request_id)
    back = reverse("billing-team", args=[access.team.slug])
    return render(request, "billing/team/record.html", {"access": access, "record": record, "back": back, "tab": ""})
