"""The worker's call_finished signal fills the column whose call ended, and nothing else."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from billing.models import UsageRecord
from playground.models import PlaygroundRun, RunPanel
from routing.calls.booking import call_finished
from routing.calls.spec import CallSpec
from routing.providers.types import ChatRequest, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def panel(cast: dict[str, Any]) -> RunPanel:
    run = PlaygroundRun.objects.create(user=cast["alice"], prompt="Explain how tides work.")
    return RunPanel.objects.create(run=run, position=0, requested="fallback", call_id=f"pg-{uuid.uuid4().hex}")


def finish(
    panel: RunPanel,
    *,
    source: str = "playground",
    status: str = "ok",
    text: str = "",
    error: dict[str, str] | None = None,
    **fields: Any,
) -> None:
    spec = CallSpec(
        call_id=panel.call_id,
        created_at=timezone.now(),
        requested=panel.requested,
        chain=("sim/paced",),
        request=ChatRequest(messages=(Message(role="user", content="Explain how tides work."),)),
        source=source,
    )
    record = UsageRecord.objects.create(request_id=panel.call_id, created_at=spec.created_at, status=status, **fields)
    call_finished.send(None, spec=spec, record=record, text=text, error=error)


def test_a_successful_call_fills_its_panel_with_the_answer_and_figures(panel: RunPanel) -> None:
    attempts = [{"model": "sim/broken", "outcome": "unavailable"}, {"model": "sim/paced", "outcome": "ok"}]
    finish(
        panel,
        text="The Moon pulls the sea.",
        model="sim/paced",
        attempts=attempts,
        input_tokens=12,
        output_tokens=7,
        tokens_estimated=True,
        cost_usd=Decimal("0.000040"),
        ttft_ms=85,
        latency_ms=410,
    )
    panel.refresh_from_db()
    assert (panel.status, panel.model, panel.output) == ("ok", "sim/paced", "The Moon pulls the sea.")
    assert (panel.input_tokens, panel.output_tokens, panel.tokens_estimated) == (12, 7, True)
    assert (panel.cost_usd, panel.ttft_ms, panel.latency_ms) == (Decimal("0.000040"), 85, 410)
    assert panel.attempts == attempts
    assert (panel.error_kind, panel.error_message) == ("", "")


def test_a_failed_call_records_the_error_kind_and_message(panel: RunPanel) -> None:
    finish(
        panel,
        status="error",
        text="Half an",
        error={"kind": "unavailable", "message": "connection cut"},
        model="sim/paced",
        error_kind="unavailable",
    )
    panel.refresh_from_db()
    assert (panel.status, panel.output, panel.error_kind, panel.error_message) == (
        "error",
        "Half an",
        "unavailable",
        "connection cut",
    )


def test_a_stopped_call_is_marked_stopped_not_failed(panel: RunPanel) -> None:
    finish(panel, status="cancelled", text="The Mo", error={"kind": "cancelled", "message": "stopped before the end"})
    panel.refresh_from_db()
    assert (panel.status, panel.output, panel.error_kind) == ("cancelled", "The Mo", "")


def test_a_call_from_the_api_leaves_panels_alone(panel: RunPanel) -> None:
    finish(panel, source="api", text="not for the playground", model="sim/paced")
    panel.refresh_from_db()
    assert (panel.status, panel.output, panel.model) == ("running", "", "")
