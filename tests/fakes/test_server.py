from __future__ import annotations

import httpx
import pytest

from tests.fakes.server import FakeUpstream, Reply, serve, wire_head


def test_it_serves_queued_replies_and_records_requests() -> None:
    fake = FakeUpstream()
    status, headers = wire_head("openai-error-429.headers")
    fake.queue(Reply(status=status, headers=headers, body=b"{}"))
    with serve(fake) as base_url:
        response = httpx.post(f"{base_url}/v1/x", json={"a": 1})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "27"
    assert fake.requests[0].json() == {"a": 1}


def test_it_cuts_the_connection_mid_body() -> None:
    fake = FakeUpstream()
    fake.queue(
        Reply(body=b"data: hello\n\ndata: world\n\n", cut_after=13, headers=[(b"content-type", b"text/event-stream")])
    )
    with (
        serve(fake) as base_url,
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{base_url}/v1/x") as response,
    ):
        for _ in response.iter_bytes():
            pass


def test_it_tells_when_the_client_leaves_before_the_reply_is_complete() -> None:
    fake = FakeUpstream()
    fake.queue(Reply(pieces=[b"data: hello\n\n", b"data: world\n\n"], chunk_delay=30))
    with serve(fake) as base_url:
        with httpx.stream("POST", f"{base_url}/v1/x") as response:
            assert next(response.iter_raw()) == b"data: hello\n\n"
        assert fake.requests[0].client_left.wait(timeout=5)


def test_it_does_not_say_a_client_left_when_it_read_the_whole_reply() -> None:
    fake = FakeUpstream()
    fake.queue(Reply(body=b"data: hello\n\n"))
    with serve(fake) as base_url:
        response = httpx.post(f"{base_url}/v1/x")
    assert response.content == b"data: hello\n\n"
    assert not fake.requests[0].client_left.is_set()
