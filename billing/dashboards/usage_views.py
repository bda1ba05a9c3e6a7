"""The usage lists and their CSV exports: a team's (/teams/<slug>/usage/) and one's own (/me/).

Both read the same list code (usage_list.py) through the viewer's scope
(access.py), with the dashboards' filters from the URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from billing.dashboards import selectors
from billing.dashboards.access import PersonalAccess, UsageScope, team_access
from billing.dashboards.filters import FiltersForm
from billing.dashboards.usage_list import BadCursor, Cursor, keyset_batches, usage_page
from billing.dashboards.views import partial_or_page, team_context
from billing.usage_csv import FIELDS, csv_response
from routing.trace import trace_view

if TYPE_CHECKING:
    from switchyard.request_types import AuthenticatedHttpRequest


def _list_context(request: AuthenticatedHttpRequest, access: UsageScope, form: FiltersForm, tab: str) -> dict[str, Any]:
    """The frame and filters, and the page of calls the URL's cursor asks for (or why it cannot be read)."""
    context = team_context(request, access, form, tab)
    filters = context["filters"]
    if filters is None:
        return context
    try:
        after, before = (Cursor.parse(text) if (text := request.GET.get(key)) else None for key in ("after", "before"))
    except BadCursor as error:
        context["cursor_error"] = str(error)
        return context
    context["page"] = usage_page(access.records().filter(filters.record_q()), after=after, before=before)
    return context


def _export(request: AuthenticatedHttpRequest, access: UsageScope, name: str) -> HttpResponse | StreamingHttpResponse:
    form = FiltersForm(request.GET, access=access)
    if not form.is_valid():
        return render(request, "billing/team/_filter_errors.html", {"form": form}, status=400)
    records = access.records().filter(form.filters().record_q())
    return csv_response(request, keyset_batches(records, FIELDS), name=name)


@require_GET
@login_required
def team_usage(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """The team's calls the viewer may read, newest first, a page at a time, each linked to its record."""
    access = team_access(request.user, slug)
    context = _list_context(request, access, FiltersForm(request.GET, access=access), "usage")
    context["export_url"] = reverse("billing-team-usage-csv", args=[slug])
    context["team"] = access.team
    return partial_or_page(request, "billing/team/usage.html", "team-view", context)


@require_GET
@login_required
def team_usage_csv(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse | StreamingHttpResponse:
    """The calls of the list's filters, every one of them, as CSV with the unit prices each was booked at."""
    access = team_access(request.user, slug)
    return _export(request, access, f"usage-{access.team.slug}")


@require_GET
@login_required
def me(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The viewer's own spend, keys and calls, in every team and in none."""
    access = PersonalAccess(viewer=request.user)
    context = _list_context(request, access, FiltersForm(request.GET, access=access), "me")
    context["export_url"] = reverse("me-usage-csv")
    filters = context["filters"]
    if filters is not None:
        rollups = [access.rollups().filter(filters.rollup_q())]
        keys = list(access.keys().select_related("team").order_by("-created_at"))
        spend_by_key = {share.key: share for share in selectors.spend_by(rollups, "key", limit=len(keys) + 1)}
        context["totals"] = selectors.totals(rollups)
        context["keys"] = [(key, spend_by_key.get(key.pk)) for key in keys]
        context["teams"] = selectors.spend_by(rollups, "team")
    return partial_or_page(request, "billing/me/page.html", "team-view", context)


@require_GET
@login_required
def me_usage_csv(request: AuthenticatedHttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The viewer's own calls of the filters, as CSV."""
    return _export(request, PersonalAccess(viewer=request.user), f"usage-{request.user.get_username()}")


@require_GET
@login_required
def me_record(request: AuthenticatedHttpRequest, request_id: str) -> HttpResponse:
    """One of the viewer's own calls, where no team's page shows it to them (booked to no team, or one they left)."""
    access = PersonalAccess(viewer=request.user)
    record = get_object_or_404(access.records().select_related("user", "api_key"), request_id=request_id)
    context = {"record": record, "back": reverse("me"), "trace": trace_view(record.trace)}
    return render(request, "billing/me/record.html", context)
