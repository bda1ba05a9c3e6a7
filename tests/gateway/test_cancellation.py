from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import wire
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)


def _events(name: str) -> list[bytes]:
    return [event + b"\n\n" for event in wire(name).split(b"\n\n") if event]


def test_it_stops_the_upstream_call_when_the_client_goes_away(
    client: Any, upstream: FakeOpenAI, gateway_url: str, api_key: str
) -> None:
    pieces = _events("openai-chat-stream.sse")
    upstream.queue(FakeOpenAI.stream(pieces=pieces, chunk_delay=0.4))
    body = {"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}], "stream": True}
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.stream("POST", f"{gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if '"content":"Hello"' in line:
                break
    record = booked(request_id)
    assert record.status == "cancelled"
    assert record.tokens_estimated
    assert 0 < record.output_tokens < 10
    # The whole recorded stream would take len(pieces) * 0.4 s upstream.
    assert record.latency_ms < (len(pieces) - 2) * 400


def test_a_stream_that_outlasts_the_call_deadline_is_ended_and_booked_as_a_timeout(
    client: Any, upstream: FakeOpenAI, gateway_url: str, api_key: str, settings: Any
) -> None:
    settings.CALL_DEADLINE_SECONDS = 1
    pieces = _events("openai-chat-stream.sse")
    # Each chunk comes well within the read timeout, but the whole stream takes 3.6 s.
    upstream.queue(FakeOpenAI.stream(pieces=pieces, chunk_delay=0.4))
    body = {"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}], "stream": True}
    headers = {"Authorization": f"Bearer {api_key}"}
    started = time.monotonic()
    with httpx.stream("POST", f"{gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        lines = list(response.iter_lines())
    assert time.monotonic() - started < 2.5
    assert any('"content":"Hello"' in line for line in lines)
    assert any('"code":"timeout"' in line for line in lines)
    assert lines[-1] != "data: [DONE]"
    record = booked(request_id)
    assert record.status == "error"
    assert record.error_kind == "timeout"
    assert record.output_tokens > 0
