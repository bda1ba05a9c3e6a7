"""What a run and its columns show: titles, figures and outcomes in words, ready for the templates.

Built from the rows alone, so the page, the SSE fragments and the vote
reveal all say the same thing. In a blind run nothing that names a model is
shown until the run has a vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from billing.money import format_usd
from playground.models import PlaygroundRun, RunPanel
from playground.render import render_markdown
from playground.votes import panel_reveal
from routing.providers.errors import ErrorKind

_OUTCOMES = {
    "cancelled": "stopped",
    "worker_lost": "the worker running it stopped",
}


def outcome_in_words(outcome: str, message: str = "") -> str:
    """An attempt's or a call's outcome as a person would say it (never a traceback)."""
    if outcome == "skipped":
        return f"skipped ({message})" if message else "skipped"
    if outcome == "escalated":
        return f"escalated ({message})" if message else "escalated"
    if outcome == ErrorKind.CIRCUIT_OPEN and message:
        # "skipped: circuit open until 12:03:41 UTC" says more than the kind's label.
        return message
    try:
        return ErrorKind(outcome).label
    except ValueError:
        return _OUTCOMES.get(outcome, outcome.replace("_", " "))


def seconds(ms: int | None) -> str:
    if ms is None:
        return "—"
    value = ms / 1000
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def tokens_per_second(output_tokens: int, ttft_ms: int | None, latency_ms: int | None) -> str:
    """Output speed once the answer had started (the wait for the first token is not counted)."""
    if not latency_ms or output_tokens <= 0:
        return "—"
    streaming_ms = latency_ms - (ttft_ms or 0)
    if streaming_ms <= 0 or output_tokens < 2:
        streaming_ms = latency_ms
    return f"{output_tokens / (streaming_ms / 1000):,.0f} tok/s"


def attempt_lines(attempts: list[dict[str, Any]], answered_by: str = "") -> list[str]:
    """One sentence per model tried before `answered_by`'s attempt (every model when none answered), in order.

    The answering model's own attempt is not among them, whatever its outcome
    (a stopped or cut answer is still its answer).
    """
    answering = [i for i, attempt in enumerate(attempts) if answered_by and attempt.get("model") == answered_by]
    before = attempts[: answering[-1]] if answering else attempts
    lines = []
    for attempt in before:
        outcome = attempt.get("outcome", "")
        if outcome == "ok":
            continue
        words = outcome_in_words(outcome, attempt.get("message", ""))
        details = []
        if attempt.get("status_code"):
            details.append(f"HTTP {attempt['status_code']}")
        if attempt.get("elapsed_ms"):
            details.append(f"after {seconds(attempt['elapsed_ms'])}")
        suffix = f" ({', '.join(details)})" if details else ""
        lines.append(f"{attempt.get('model', '?')}: {words}{suffix}")
    return lines


@dataclass(frozen=True)
class PanelView:
    position: int
    title: str
    requested: str
    is_route: bool
    chain: tuple[str, ...]
    route_reason: str
    # The call's record page (its trace), once the call has ended: a team's records have pages.
    record_url: str
    status: str
    status_label: str
    running: bool
    model: str
    output: str
    ttft: str
    total: str
    tokens_in: str
    tokens_out: str
    speed: str
    cost: str
    error_words: str
    error_message: str
    fallbacks: list[str]
    reveal: bool
    elapsed_ms: int

    @property
    def answer_html(self) -> SafeString:
        """The answer as safe HTML, rendered only where a page shows it."""
        return render_markdown(self.output)


@dataclass(frozen=True)
class RunView:
    run: PlaygroundRun
    panels: list[PanelView]
    reveal: bool
    running: bool
    total_cost: str
    counts: str
    columns: int
    # The chosen models and routes; alphabetical while a blind run's order is secret.
    models: list[str]


def _cost(panel: RunPanel) -> str:
    if panel.cost_usd is not None:
        return format_usd(panel.cost_usd)
    # A call that no model answered used no tokens: nothing to price.
    return "—" if not panel.model else "no price"


def panel_view(panel: RunPanel, *, run: PlaygroundRun, chains: dict[str, tuple[str, ...]], reveal: bool) -> PanelView:
    running = panel.status == RunPanel.Status.RUNNING
    is_route = panel.requested in chains
    estimated = "≈ " if panel.tokens_estimated else ""
    error_words = ""
    if panel.status == RunPanel.Status.ERROR:
        error_words = outcome_in_words(panel.error_kind or "unavailable")
    elapsed = int((timezone.now() - run.created_at).total_seconds() * 1000)
    return PanelView(
        position=panel.position,
        title=panel.requested if reveal else panel.label,
        requested=panel.requested,
        is_route=is_route,
        chain=chains.get(panel.requested, ()),
        route_reason=panel.route_reason if reveal else "",
        record_url=reverse("call-record", args=[panel.call_id]) if run.team_id and reveal and not running else "",
        status=panel.status,
        status_label=panel.get_status_display(),
        running=running,
        model=panel.model,
        output=panel.output,
        ttft=seconds(panel.ttft_ms),
        total=seconds(panel.latency_ms),
        tokens_in=f"{estimated}{panel.input_tokens:,}",
        tokens_out=f"{estimated}{panel.output_tokens:,}",
        speed=tokens_per_second(panel.output_tokens, panel.ttft_ms, panel.latency_ms),
        cost=_cost(panel),
        error_words=error_words,
        # A provider's message may name its model: hidden with the names.
        error_message=panel.error_message[:300] if reveal else "",
        fallbacks=attempt_lines(panel.attempts, panel.model) if reveal and is_route else [],
        reveal=reveal,
        elapsed_ms=max(elapsed, 0),
    )


def run_view(run: PlaygroundRun, *, chains: dict[str, tuple[str, ...]]) -> RunView:
    """`chains`: route name -> its models, for the routes among the run's panels."""
    reveal = panel_reveal(run)
    panels = [panel_view(p, run=run, chains=chains, reveal=reveal) for p in run.panels.all()]
    costs = [p.cost_usd for p in run.panels.all() if p.cost_usd is not None]
    total = sum(costs, Decimal(0))
    tally: dict[str, int] = {}
    for p in panels:
        tally[p.status_label.lower()] = tally.get(p.status_label.lower(), 0) + 1
    return RunView(
        run=run,
        panels=panels,
        reveal=reveal,
        running=any(p.running for p in panels),
        total_cost=format_usd(total) if costs else "no price",
        counts=", ".join(f"{n} {label}" for label, n in tally.items()),
        columns=len(panels) if len(panels) <= 4 else 3,
        models=[p.requested for p in panels] if reveal else sorted(p.requested for p in panels),
    )
