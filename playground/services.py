"""Writes of the playground: start a run, stop it, record what each column's call did."""

from __future__ import annotations

import functools
import random
import string
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from routing.strategies.complexity import classify_prompt
from playground.models import PlaygroundRun, RunPanel
from playground.selectors import chat_request_for, team_for_user
from routing.calls.stream import request_cancel
from routing.calls.spec import CallSpec
from routing.catalog import Catalog, get_catalog
from routing.strategies.resolution import ModelNotFound, NoCapableModel, Resolution, resolve
from routing.tasks import run_calls_task

if TYPE_CHECKING:
    from billing.models import UsageRecord

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


def playground_run_start(*, user_id: int, request: RunRequest, catalog: Catalog | None = None) -> PlaygroundRun:
    """Create the run and one panel per selection, and hand each panel's call to a worker once committed.

    Each call is the gateway's own task with a CallSpec of source "playground",
    so it is resolved, walked, booked and streamed exactly as a /v1 call is.
    Blind runs shuffle the columns and label them Model A, B, … Without a
    category, the classifier routing uses picks one from the prompt. Raises
    RunRefused when a selection cannot be resolved; nothing is written then.
    """
    if not MIN_PANELS <= len(request.selections) <= MAX_PANELS:
        raise RunRefused(f"A run compares {MIN_PANELS} to {MAX_PANELS} models or routes.")
    catalog = catalog or get_catalog()
    chat = chat_request_for(
        prompt=request.prompt,
        system_prompt=request.system_prompt,
        temperature=request.temperature,
        max_tokens=request.max_tokens,
    )
    resolutions: list[Resolution] = []
    for selection in request.selections:
        try:
            resolutions.append(resolve(catalog, selection, chat))
        except (ModelNotFound, NoCapableModel) as exc:
            raise RunRefused(str(exc)) from None
    team = team_for_user(user_id=user_id)
    order = list(range(len(request.selections)))
    if request.blind:
        random.SystemRandom().shuffle(order)
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
        specs: list[dict[str, Any]] = []
        for position, index in enumerate(order):
            call_id = f"pg-{uuid.uuid4().hex}"
            resolution = resolutions[index]
            RunPanel.objects.create(
                run=run,
                position=position,
                label=blind_label(position) if request.blind else "",
                requested=request.selections[index],
                call_id=call_id,
            )
            spec = CallSpec(
                call_id=call_id,
                created_at=timezone.now(),
                requested=request.selections[index],
                route=resolution.route,
                chain=resolution.chain,
                skipped=resolution.skipped,
                request=resolution.request,
                user_id=user_id,
                team_id=team.pk if team else None,
                source="playground",
                publish_deltas=True,
            )
            specs.append(spec.to_json())
        # One task message for the run's calls; a worker must find the panels' rows when their calls end.
        transaction.on_commit(
            functools.partial(run_calls_task.apply_async, args=[specs], task_id=specs[0]["call_id"])
        )
    return run


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
