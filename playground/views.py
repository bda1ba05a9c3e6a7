"""The playground pages: the run form, a run's columns streaming over SSE, the history."""

from __future__ import annotations

import functools
import time
import uuid
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from playground import selectors
from playground.figures import RunView, run_view
from playground.forms import RunForm
from playground.models import PlaygroundRun
from playground.services import RunRefused, playground_run_call_specs, playground_run_start, playground_run_stop
from playground.streaming import Column, Ending, Fragments, RunRelay, cursor_parse
from routing.calls.events import Started
from routing.catalog import Catalog, get_catalog

if TYPE_CHECKING:
    from switchyard.request_types import AuthenticatedHttpRequest

RUNS_PER_PAGE = 25
# The stream of a run outlives its calls' own deadline by this much.
STREAM_GRACE_SECONDS = 60


def _user_id(request: AuthenticatedHttpRequest) -> int:
    return int(request.user.pk)


def _run_view(run: PlaygroundRun, catalog: Catalog | None = None) -> RunView:
    names = [p.requested for p in run.panels.all()]
    return run_view(run, chains=selectors.route_chains(catalog=catalog or get_catalog(), names=names))


def _form_context(form: RunForm) -> dict[str, Any]:
    selected = form["models"].value() or []
    if isinstance(selected, str):
        selected = [selected]
    options = selectors.picker_options(catalog=form.catalog, at=timezone.now())
    return {"form": form, "options": options, "selected": selected, "estimate": form.estimate()}


def _initial_from(run: PlaygroundRun) -> dict[str, Any]:
    return {
        "prompt": run.prompt,
        "system_prompt": run.system_prompt,
        "models": [p.requested for p in sorted(run.panels.all(), key=lambda p: p.position)],
        "temperature": run.temperature,
        "max_tokens": run.max_tokens,
        "blind": run.blind,
        "category": run.category,
    }


@login_required
@require_http_methods(["GET", "POST"])
def index(request: AuthenticatedHttpRequest) -> HttpResponse:
    catalog = get_catalog()
    if request.method == "POST":
        form = RunForm(request.POST, user_id=_user_id(request), catalog=catalog)
        if form.is_valid():
            try:
                run = playground_run_start(user_id=_user_id(request), request=form.run_request())
            except RunRefused as refused:
                form.add_error(None, refused.message)
            else:
                if not request.htmx:
                    return redirect("playground:run-detail", run_id=run.pk)
                return render(request, "playground/run.html#run", {"rv": _run_view(run), "on_index": True})
        if request.htmx:
            response = render(request, "playground/index.html#run-form", _form_context(form))
            return reswap(retarget(response, "#run-form"), "outerHTML")
    else:
        initial: dict[str, Any] = {}
        if again := request.GET.get("again"):
            try:
                source = get_object_or_404(selectors.runs_of_user(user=request.user), pk=uuid.UUID(again))
            except ValueError:
                raise Http404("No such run") from None
            initial = _initial_from(source)
        form = RunForm(initial=initial, user_id=_user_id(request), catalog=catalog)
    return render(request, "playground/index.html", _form_context(form))


@login_required
@require_POST
def estimate(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = RunForm(request.POST, user_id=_user_id(request), catalog=get_catalog())
    return render(request, "playground/index.html#estimate", {"estimate": form.estimate()})


@login_required
@require_GET
def run_detail(request: AuthenticatedHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = get_object_or_404(selectors.runs_of_user(user=request.user), pk=run_id)
    return render(request, "playground/run_detail.html", {"rv": _run_view(run)})


@login_required
@require_GET
def run_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    page = Paginator(selectors.runs_of_user(user=request.user), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    catalog = get_catalog()
    rows = [_run_view(run, catalog) for run in page.object_list]
    return render(request, "playground/run_list.html", {"page": page, "rows": rows})


@login_required
@require_POST
async def run_stop(request: AuthenticatedHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    user = await request.auser()
    try:
        run = await selectors.runs_of_user(user=user).aget(pk=run_id)
    except PlaygroundRun.DoesNotExist:
        raise Http404("No such run") from None
    await playground_run_stop(run=run)
    return HttpResponse('<span class="pg-stopping" role="status">Stopping…</span>')


def _run_for_stream(user: Any, run_id: uuid.UUID) -> tuple[PlaygroundRun, list[Column]]:
    run = get_object_or_404(selectors.runs_of_user(user=user), pk=run_id)
    columns = [
        Column(position=p.position, call_id=p.call_id, ended=p.status != p.Status.RUNNING) for p in run.panels.all()
    ]
    return run, columns


def _fragments(run_id: uuid.UUID) -> Fragments:
    def load() -> RunView:
        return _run_view(get_object_or_404(PlaygroundRun.objects.prefetch_related("panels"), pk=run_id))

    # What a "started" fragment shows (labels, chosen models) does not change
    # during a run: load it once per stream, not once per column.
    static: list[RunView] = []

    def load_static() -> RunView:
        if not static:
            static.append(load())
        return static[0]

    def ending(position: int) -> Ending:
        rv = load()
        panel = next(p for p in rv.panels if p.position == position)
        context = {"rv": rv, "p": panel, "streamed": True}
        return Ending(
            body_html=render_to_string("playground/run.html#panel-body", context),
            foot_html=render_to_string("playground/run.html#panel-foot", context),
            failed=panel.status != "ok",
        )

    def started(position: int, event: Started) -> str:
        rv = load_static()
        panel = next(p for p in rv.panels if p.position == position)
        context = {"rv": rv, "p": panel, "model": event.model, "tried": len(event.attempts)}
        return render_to_string("playground/run.html#panel-started", context)

    def timed_out(position: int) -> str:
        return render_to_string("playground/run.html#panel-timed-out", {})

    def summary() -> str:
        return render_to_string("playground/run.html#summary", {"rv": load(), "streamed": True})

    return Fragments(
        ending=sync_to_async(ending),
        started=sync_to_async(started),
        timed_out=sync_to_async(timed_out),
        summary=sync_to_async(summary),
    )


@login_required
@require_GET
async def run_events(request: AuthenticatedHttpRequest, run_id: uuid.UUID) -> StreamingHttpResponse:
    user = await request.auser()
    run, columns = await sync_to_async(_run_for_stream)(user, run_id)
    # A run reopened long after its calls' deadline streams nothing new: end it quickly.
    age = (timezone.now() - run.created_at).total_seconds()
    budget = max(settings.CALL_DEADLINE_SECONDS + STREAM_GRACE_SECONDS - age, 5)
    relay = RunRelay(
        run_id=str(run.pk),
        columns=columns,
        fragments=_fragments(run.pk),
        deadline=time.monotonic() + budget,
        respec=sync_to_async(functools.partial(playground_run_call_specs, run=run)),
        pushed_at=time.monotonic() - age,
    )
    relay.resume(cursor_parse(request.headers.get("Last-Event-ID")))
    return StreamingHttpResponse(
        relay.events(),
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
