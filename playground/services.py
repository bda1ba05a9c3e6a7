"""Writes of the playground: start a run, stop it, record what each column's call did."""

from __future__ import annotations

import contextlib
import functools
import random
import string
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction

from billing.models import Team, UsageRecord
from billing.selectors import team_of_user
from playground.models import PlaygroundRun, RunPanel
from playground.selectors import chat_request_for
from routing.calls.spec import CallSpec
from routing.calls.start import (
    Admitted,
    Caller,
    CallRefused,
    call_spec_for,
    calls_abandon,
    calls_admit,
    calls_enqueue,
    calls_sized_again,
)
from routing.calls.stream import request_cancel
from routing.catalog import get_catalog
from routing.strategies.complexity import classify_prompt
from routing.strategies.resolution import reasons

MIN_PANELS = 2
MAX_PANELS = 6


class RunRefused(Exception):
    """The run cannot start; `message` says why, in words fit for the form."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RunRequest:
    prompt: str
    selections: tuple[str, ...]
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    blind: bool = False
    category: str = ""


def blind_label(position: int) -> str:
    return f"Model {string.ascii_uppercase[position]}"


def playground_run_start(*, user_id: int, request: RunRequest) -> PlaygroundRun:
    """Create the run and one panel per selection, and start each panel's call once they are committed.

    Each call is started as a /v1 call is (routing/calls/start.py), with
    source "playground", so it is resolved, capped, walked, booked and
    streamed the same way. Blind runs shuffle the columns and label them
    Model A, B, … Without a category, the prompt scorer picks one. Raises
    RunRefused when a selection cannot be resolved or a cap is used up;
    nothing is written then.
    """
    if not MIN_PANELS <= len(request.selections) <= MAX_PANELS:
        raise RunRefused(f"A run compares {MIN_PANELS} to {MAX_PANELS} models or routes.")
    chat = chat_request_for(
        prompt=request.prompt,
        system_prompt=request.system_prompt,
        temperature=request.temperature,
        max_tokens=request.max_tokens,
    )
    order = list(range(len(request.selections)))
    if request.blind:
        random.SystemRandom().shuffle(order)
    team = team_of_user(user_id=user_id)
    caller = Caller(user_id=user_id, team_id=team.pk if team else None)
    try:
        admitted = async_to_sync(calls_admit)(
            caller=caller,
            requested=[request.selections[index] for index in order],
            request=chat,
            source=UsageRecord.Source.PLAYGROUND,
        )
    except CallRefused as refused:
        prefix = "Nothing was run: " if refused.code in ("insufficient_quota", "rate_limit_exceeded") else ""
        raise RunRefused(prefix + refused.message) from None
    try:
        return _run_write(user_id=user_id, team=team, request=request, admitted=admitted)
    except BaseException:
        async_to_sync(calls_abandon)(admitted.specs)
        raise


def _run_write(*, user_id: int, team: Team | None, request: RunRequest, admitted: Admitted) -> PlaygroundRun:
    """The run and its columns, and its calls enqueued once they are committed."""
    with transaction.atomic():
        run = PlaygroundRun.objects.create(
            user_id=user_id,
            team=team,
            prompt=request.prompt,
            system_prompt=request.system_prompt,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            blind=request.blind,
            category=request.category or classify_prompt(request.prompt),
        )
        RunPanel.objects.bulk_create(
            RunPanel(
                run=run,
                position=position,
                label=blind_label(position) if request.blind else "",
                requested=spec.requested,
                call_id=spec.call_id,
                route_reason=reasons(spec.routing)[:500],
            )
            for position, spec in enumerate(admitted.specs)
        )
        # After the commit: a worker must find the panels' rows when their calls end.
        transaction.on_commit(functools.partial(async_to_sync(calls_enqueue), admitted.specs))
    return run


def playground_run_call_specs(*, run: PlaygroundRun) -> dict[int, CallSpec]:
    """The specs of the run's unfinished calls, by column, as they were started: to push one again that was lost.

    A column whose model or route is gone since is left out (it times out).
    """
    catalog = get_catalog()
    chat = chat_request_for(
        prompt=run.prompt, system_prompt=run.system_prompt, temperature=run.temperature, max_tokens=run.max_tokens
    )
    caller = Caller(user_id=run.user_id, team_id=run.team_id)
    specs: dict[int, CallSpec] = {}
    for panel in run.panels.filter(status=RunPanel.Status.RUNNING):
        with contextlib.suppress(CallRefused):
            specs[panel.position] = call_spec_for(
                catalog,
                caller=caller,
                requested=panel.requested,
                request=chat,
                source=UsageRecord.Source.PLAYGROUND,
                call_id=panel.call_id,
                created_at=run.created_at,
            )
    return async_to_sync(calls_sized_again)(caller, catalog, specs)


async def playground_run_stop(*, run: PlaygroundRun) -> int:
    """Ask the worker of every unfinished column to stop its call; returns how many were asked.

    Each call then ends as cancelled, booked with what it had produced.
    """
    call_ids = [
        call_id
        async for call_id in RunPanel.objects.filter(run=run, status=RunPanel.Status.RUNNING).values_list(
            "call_id", flat=True
        )
    ]
    for call_id in call_ids:
        await request_cancel(call_id)
    return len(call_ids)


_STATUSES = {
    "ok": RunPanel.Status.OK,
    "error": RunPanel.Status.ERROR,
    "cancelled": RunPanel.Status.CANCELLED,
}


def run_panel_finish(*, call_id: str, record: UsageRecord, text: str, error: dict[str, Any] | None) -> int:
    """Copy a finished call's answer and figures onto its panel; returns the number of panels updated (0 or 1)."""
    status = _STATUSES.get(record.status, RunPanel.Status.ERROR)
    error = error or {}
    return RunPanel.objects.filter(call_id=call_id).update(
        status=status,
        model=record.model,
        output=text,
        error_kind="" if status != RunPanel.Status.ERROR else (error.get("kind") or record.error_kind),
        error_message="" if status != RunPanel.Status.ERROR else str(error.get("message", "")),
        attempts=record.attempts,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        tokens_estimated=record.tokens_estimated,
        cost_usd=record.cost_usd,
        ttft_ms=record.ttft_ms,
        latency_ms=record.latency_ms,
    )
