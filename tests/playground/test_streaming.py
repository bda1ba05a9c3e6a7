"""The run's SSE stream, served by uvicorn, fed by a real Celery worker running simulated models."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.test import Client

from billing.models import UsageRecord
from playground.models import PlaygroundRun, RunPanel
from playground.render import render_markdown
from playground.streaming import Column, cursor_format, cursor_parse, sse_event
from tests.playground.conftest import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

ID = re.compile(r"^\d=\d+-\d+(,\d=\d+-\d+)*$")


@dataclass
class Event:
    name: str
    data: str
    id: str | None


def events_of(response: httpx.Response, *, stop_after: str | None = "done") -> Iterator[Event]:
    """Parse an SSE body as it arrives (comments and retry fields are skipped)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            name, _, value = line.partition(":")
            if name in ("event", "data", "id"):
                value = value[1:] if value.startswith(" ") else value
                fields[name] = f"{fields['data']}\n{value}" if name == "data" and "data" in fields else value
            continue
        if "event" in fields:
            event = Event(fields["event"], fields.get("data", ""), fields.get("id"))
            yield event
            if event.name == stop_after:
                return
        fields = {}


@pytest.fixture
def live(gateway_url: str, celery_worker: Any, sim: dict[str, Any], alice_client: Client) -> tuple[str, Client]:
    return gateway_url, alice_client


def start(client: Client, *models: str, prompt: str = "Explain how tides work.") -> PlaygroundRun:
    response = client.post("/playground/", {"prompt": prompt, "models": list(models)})
    assert response.status_code == 302, response.content.decode()[:2000]
    return PlaygroundRun.objects.get(pk=response.url.rstrip("/").rsplit("/", 1)[1])


def stream(live: tuple[str, Client], run: PlaygroundRun, **headers: str) -> Any:
    url, client = live
    return httpx.stream(
        "GET", f"{url}/playground/runs/{run.pk}/events/", cookies=session_cookie(client), headers=headers, timeout=20
    )


def shown_lengths(events: list[Event], position: int, answer: str) -> list[int]:
    """How much of the answer each text event of the column showed, rendered as the finished answer is."""
    lengths = []
    for event in events:
        if event.name == f"text-{position}":
            shown = [k for k in range(len(answer) + 1) if render_markdown(answer[:k]) == event.data]
            assert shown, f"column {position} showed what is no prefix of its answer: {event.data[:200]!r}"
            lengths.append(shown[-1])
    return lengths


def wait_for_records(run: PlaygroundRun, timeout: float = 20) -> list[UsageRecord]:
    call_ids = [p.call_id for p in run.panels.all()]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = list(UsageRecord.objects.filter(request_id__in=call_ids))
        if len(records) == len(call_ids):
            return records
        time.sleep(0.05)
    raise AssertionError(f"the calls of run {run.pk} were not all booked")


def test_it_streams_every_column_and_ends_each_with_its_answer_and_figures(live: tuple[str, Client]) -> None:
    run = start(live[1], "sim/paced", "sim/steady", "fallback")
    with stream(live, run) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events = list(events_of(response))
    names = [e.name for e in events]
    assert names[-2:] == ["summary", "done"]
    assert all(e.id and ID.match(e.id) for e in events)
    panels = list(RunPanel.objects.filter(run=run).order_by("position"))
    for panel in panels:
        n = panel.position
        assert panel.status == RunPanel.Status.OK
        # Shown while it streamed, rendered, at growing lengths of the answer the worker recorded.
        shown = shown_lengths(events, n, panel.output)
        assert shown and shown == sorted(shown) and shown[-1] > 0
        final = next(e for e in events if e.name == f"final-{n}")
        done = next(e for e in events if e.name == f"done-{n}")
        assert names.index(f"final-{n}") < names.index(f"done-{n}") < names.index("summary")
        assert 'class="pg-answer pg-rendered"' in final.data
        for label in ("First token", "Total", "Tokens in / out", "Speed", "Cost"):
            assert f"<dt>{label}</dt>" in done.data
        assert f"<code>{panel.model}</code>" in done.data
    summary = next(e for e in events if e.name == "summary")
    assert "Total cost" in summary.data and "3 done" in summary.data
    # The route answered with its second model, and says why.
    assert panels[2].model == "sim/paced"
    route_done = next(e for e in events if e.name == "done-2")
    assert "sim/broken: provider unavailable" in route_done.data
    records = wait_for_records(run)
    assert {(r.source, r.user_id, r.team_id, r.status) for r in records} == {
        ("playground", run.user_id, run.team_id, "ok")
    }


def test_a_failing_model_ends_its_column_with_an_error_while_the_others_finish(live: tuple[str, Client]) -> None:
    run = start(live[1], "sim/broken", "sim/paced")
    with stream(live, run) as response:
        events = list(events_of(response))
    names = [e.name for e in events]
    assert "error-0" in names and "done-0" not in names
    assert "done-1" in names and names.count("text-1") >= 2
    error = next(e for e in events if e.name == "error-0")
    assert "<strong>Failed:</strong> provider unavailable" in error.data
    assert "Traceback" not in error.data
    broken, paced = RunPanel.objects.filter(run=run).order_by("position")
    assert (broken.status, broken.error_kind) == ("error", "unavailable")
    assert paced.status == "ok" and paced.output
    assert sorted(r.status for r in wait_for_records(run)) == ["error", "ok"]


def test_stop_ends_every_column_and_the_upstream_calls(live: tuple[str, Client]) -> None:
    run = start(live[1], "sim/slow", "sim/slower")
    started = time.monotonic()
    with stream(live, run) as response:
        events = []
        incoming = events_of(response)
        for event in incoming:
            events.append(event)
            answering = {e.name.split("-")[1] for e in events if e.name.startswith("text-")}
            if len(answering) == 2:
                stopped = live[1].post(f"/playground/runs/{run.pk}/stop/")
                assert stopped.status_code == 200 and "Stopping" in stopped.content.decode()
                break
        events.extend(incoming)
    for n in (0, 1):
        ending = next(e for e in events if e.name == f"error-{n}")
        assert "<strong>Stopped</strong> before the end." in ending.data
    # Each would take over 25 s to finish.
    assert time.monotonic() - started < 10
    records = wait_for_records(run)
    assert [r.status for r in records] == ["cancelled", "cancelled"]
    assert all(0 < r.output_tokens < 200 for r in records)
    assert set(RunPanel.objects.filter(run=run).values_list("status", flat=True)) == {"cancelled"}


def test_when_the_page_goes_away_the_calls_are_cancelled(live: tuple[str, Client]) -> None:
    run = start(live[1], "sim/slow", "sim/slower")
    with stream(live, run) as response:
        for event in events_of(response):
            if event.name.startswith("text-"):
                break
    records = wait_for_records(run, timeout=15)
    assert [r.status for r in records] == ["cancelled", "cancelled"]
    assert all(r.latency_ms < 12_000 for r in records)


def test_a_reconnect_resumes_each_column_where_it_was_and_the_run_goes_on(live: tuple[str, Client]) -> None:
    run = start(live[1], "sim/long", "sim/paced")
    with stream(live, run) as response:
        first = []
        for event in events_of(response):
            first.append(event)
            if event.name == "text-0":
                break
    with stream(live, run, **{"Last-Event-ID": first[-1].id or ""}) as response:
        second = list(events_of(response))
    long_panel = RunPanel.objects.get(run=run, position=0)
    assert long_panel.status == RunPanel.Status.OK
    # The second stream starts with at least what the first had shown, and goes on from there.
    before, after = shown_lengths(first, 0, long_panel.output), shown_lengths(second, 0, long_panel.output)
    assert after and after[0] >= before[-1] and after == sorted(after)
    final = next(e for e in second if e.name == "final-0")
    assert render_markdown(long_panel.output) in final.data


def test_reopening_a_finished_run_replays_its_endings_from_the_database(live: tuple[str, Client]) -> None:
    run = start(live[1], "sim/quick", "sim/broken")
    wait_for_records(run)
    started = time.monotonic()
    with stream(live, run) as response:
        names = [e.name for e in events_of(response)]
    assert names == ["final-0", "done-0", "final-1", "error-1", "summary", "done"]
    assert time.monotonic() - started < 2


def test_an_event_with_lines_gets_one_data_field_per_line() -> None:
    assert (
        sse_event("text-0", "a\r\nb\rc\n", "0=1-0")
        == b"event: text-0\nid: 0=1-0\ndata: a\ndata: b\ndata: c\ndata: \n\n"
    )


def test_the_cursor_round_trips_and_ignores_garbage() -> None:
    columns = [Column(0, "a", last_id="1700000000000-0"), Column(1, "b"), Column(2, "c", last_id="17-3")]
    assert cursor_parse(cursor_format(columns)) == {0: "1700000000000-0", 1: "0-0", 2: "17-3"}
    assert cursor_parse("0=1-0,x=2-0,1=nope,2=3-4\n,3") == {0: "1-0"}
    assert cursor_parse(None) == {}
