"""Circuit breakers: a model that keeps failing is skipped by every call until one probe finds it well.

The calls go through the real gateway and the in-process Celery worker
against the fake OpenAI upstream; the circuits live in the test Redis, where
tests/conftest.py closes them all before each test.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from django.test import Client

from routing.catalog import get_catalog
from routing.models import LanguageModel, ModelPrice, Provider
from routing.providers.errors import ErrorKind, ProviderError
from routing.resilience.circuits import CircuitOpen, Passage, Scope, circuit_pass, circuit_states, circuit_trip
from switchyard.redis_clients import get_redis
from tests.fakes.openai import FakeOpenAI
from tests.gateway import conftest as gateway
from tests.usage_records import booked

pytestmark = pytest.mark.django_db(transaction=True)

registry = gateway.registry
alice = gateway.alice
api_key = gateway.api_key

MINI = "up/gpt-4o-mini"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def call(gateway_url: str, api_key: str, celery_worker: Any, registry: dict[str, Any]) -> Any:
    """POST a chat completion for `model` (a model id or a route); the raw response, streamed or not, read."""

    def post(model: str, *, stream: bool = False) -> httpx.Response:
        body = {"model": model, "messages": HI, "stream": stream}
        headers = {"authorization": f"Bearer {api_key}"}
        return httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=30)

    return post


def _circuit_settings(registry: dict[str, Any], **settings: float) -> None:
    provider: Provider = registry["providers"]["up"]
    for name, value in settings.items():
        setattr(provider, f"circuit_{name}", value)
    provider.save()


def _fail_three_times(call: Any, upstream: FakeOpenAI, *, retry_after: str | None = None) -> None:
    """Three 429s; without `retry_after`, the recorded body's "try again in 26.604s" is what the provider asks."""
    upstream.queue(*(FakeOpenAI.rate_limited(retry_after=retry_after) for _ in range(3)))
    for _ in range(3):
        answer = call(MINI)
        assert (answer.status_code, answer.json()["error"]["code"]) == (503, "rate_limited")


def _fail_three_times_without_retry_after(call: Any, upstream: FakeOpenAI) -> None:
    upstream.queue(*(FakeOpenAI.server_error() for _ in range(3)))
    for _ in range(3):
        answer = call(MINI)
        assert (answer.status_code, answer.json()["error"]["code"]) == (502, "unavailable")


def _refused_by_circuit(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 503
    error: dict[str, Any] = answer.json()["error"]
    assert (error["code"], error["type"]) == ("circuit_open", "server_error")
    return error


def test_three_429s_open_a_models_circuit_and_a_call_to_it_then_gets_a_503_with_retry_after(
    call: Any, upstream: FakeOpenAI
) -> None:
    _fail_three_times(call, upstream)

    answer = call(MINI)

    error = _refused_by_circuit(answer)
    assert "skipped: circuit open until " in error["message"]
    # The provider's default cooldown, 30 s (longer than its 26.6 s), from the moment the third 429 came back.
    assert 28 <= int(answer.headers["retry-after"]) <= 30
    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=circuit_open"
    assert len(upstream.requests) == 3
    record = booked(answer.headers["x-request-id"])
    assert (record.status, record.error_kind) == ("error", "circuit_open")
    [attempt] = record.attempts
    assert attempt["outcome"] == "circuit_open"
    assert attempt["message"].startswith("skipped: circuit open until ")


def test_a_route_skips_a_model_whose_circuit_is_open_and_its_trace_says_so(call: Any, upstream: FakeOpenAI) -> None:
    _fail_three_times(call, upstream)

    answer = call("auto")

    assert answer.status_code == 200
    assert answer.headers["x-switchyard-model"] == "up2/gpt-4o"
    assert answer.headers["x-switchyard-attempts"] == f"{MINI}=circuit_open, up2/gpt-4o=ok"
    assert [r.json()["model"] for r in upstream.requests[3:]] == ["gpt-4o"]
    record = booked(answer.headers["x-request-id"])
    assert record.attempts[0]["message"].startswith("skipped: circuit open until ")
    # Skipping a model without calling it is not falling back.
    assert record.fell_back is False


def test_a_retry_after_longer_than_the_cooldown_keeps_the_circuit_open_that_long(
    call: Any, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    _circuit_settings(registry, cooldown_seconds=0.5)
    _fail_three_times(call, upstream, retry_after="3")
    opened = time.monotonic()

    time.sleep(1)
    answer = call(MINI)
    _refused_by_circuit(answer)
    assert 1 <= int(answer.headers["retry-after"]) <= 2

    time.sleep(max(0, opened + 3.2 - time.monotonic()))
    assert call(MINI).status_code == 200
    assert len(upstream.requests) == 4


def test_a_stream_cut_mid_answer_counts_as_a_failure(call: Any, upstream: FakeOpenAI) -> None:
    upstream.queue(*(FakeOpenAI.cut_mid_stream() for _ in range(3)))
    for _ in range(3):
        answer = call(MINI, stream=True)
        assert answer.status_code == 200
        # "Hello!" reached the client, then the stream ended with an error event, not a cut connection.
        assert "Hello" in answer.text
        assert '"code":"unavailable"' in answer.text

    _refused_by_circuit(call(MINI, stream=True))
    assert len(upstream.requests) == 3


def test_the_probe_after_the_cooldown_opens_the_circuit_again_when_it_fails_and_closes_it_when_it_answers(
    call: Any, upstream: FakeOpenAI, registry: dict[str, Any]
) -> None:
    _circuit_settings(registry, cooldown_seconds=0.3)
    _fail_three_times_without_retry_after(call, upstream)
    time.sleep(0.4)

    upstream.queue(FakeOpenAI.overloaded())
    assert call(MINI).json()["error"]["code"] == "overloaded"
    # The probe failed: open again at once, for another cooldown.
    _refused_by_circuit(call(MINI))
    assert len(upstream.requests) == 4

    time.sleep(0.4)
    assert call(MINI).status_code == 200
    # The probe answered: closed, every call goes through.
    assert call(MINI).status_code == 200
    assert len(upstream.requests) == 6


def test_a_flushed_redis_closes_every_circuit(call: Any, upstream: FakeOpenAI) -> None:
    _fail_three_times(call, upstream)
    _refused_by_circuit(call(MINI))

    get_redis().flushdb()

    assert call(MINI).status_code == 200
    assert len(upstream.requests) == 4


@pytest.fixture
def second_up_model(registry: dict[str, Any]) -> str:
    """A second model of provider up, gpt-4o: its public id."""
    model = LanguageModel.objects.create(
        public_id="up/gpt-4o",
        provider=registry["providers"]["up"],
        upstream_name="gpt-4o",
        context_window=128000,
        max_output_tokens=4096,
    )
    ModelPrice.objects.create(model=model, input_per_million=1, output_per_million=1)
    return model.public_id


def test_a_providers_circuit_opens_when_its_failures_come_from_more_than_one_of_its_models(
    call: Any, upstream: FakeOpenAI, second_up_model: str
) -> None:
    upstream.queue(FakeOpenAI.server_error(), FakeOpenAI.server_error())
    for _ in range(2):
        assert call(MINI).status_code == 502
    # Two failures of one model open nothing.
    assert call("up/gpt-4o").status_code == 200

    upstream.queue(FakeOpenAI.server_error())
    assert call("up/gpt-4o").status_code == 502

    # Three failures of the provider, from two models: every model of it is skipped, even one with a closed circuit.
    error = _refused_by_circuit(call(MINI))
    assert "skipped: provider up's circuit open until " in error["message"]
    _refused_by_circuit(call("up/gpt-4o"))
    assert len(upstream.requests) == 4


def test_three_failures_of_one_model_leave_its_providers_other_models_alone(
    call: Any, upstream: FakeOpenAI, second_up_model: str
) -> None:
    _fail_three_times(call, upstream)

    _refused_by_circuit(call(MINI))
    assert call("up/gpt-4o").status_code == 200


def test_failures_older_than_the_window_do_not_count(call: Any, upstream: FakeOpenAI, registry: dict[str, Any]) -> None:
    _circuit_settings(registry, window_seconds=0.5)
    upstream.queue(FakeOpenAI.server_error(), FakeOpenAI.server_error())
    call(MINI)
    call(MINI)
    time.sleep(0.6)
    upstream.queue(FakeOpenAI.server_error())
    call(MINI)

    assert call(MINI).status_code == 200


def test_errors_that_say_nothing_of_the_providers_health_do_not_count(call: Any, upstream: FakeOpenAI) -> None:
    upstream.queue(*(FakeOpenAI.context_too_long() for _ in range(3)), FakeOpenAI.unauthorized())
    for _ in range(4):
        assert call(MINI).status_code in (400, 502)

    assert call(MINI).status_code == 200


# The circuits themselves, against the test Redis ------------------------------------------------


def _model(public_id: str = MINI) -> Any:
    return get_catalog().models[public_id]


async def _passes(model: Any, call_ids: list[str]) -> list[Passage | CircuitOpen]:
    async def one(call_id: str) -> Passage | CircuitOpen:
        try:
            return await circuit_pass(model, call_id)
        except CircuitOpen as refused:
            return refused

    return list(await asyncio.gather(*(one(call_id) for call_id in call_ids)))


def test_exactly_one_of_many_calls_at_once_probes_a_half_open_circuit(registry: dict[str, Any]) -> None:
    circuit_trip(scope=Scope.MODEL, name=MINI, cooldown_seconds=0.1)
    time.sleep(0.2)
    model = _model()

    outcomes = asyncio.run(_passes(model, [f"call-{n}" for n in range(50)]))

    probes = [o for o in outcomes if isinstance(o, Passage) and o.probes]
    assert len(probes) == 1
    refused = [o for o in outcomes if isinstance(o, CircuitOpen)]
    assert len(refused) == 49
    assert all(r.message == "skipped: circuit half-open, another call probing it" for r in refused)
    assert all(r.retry_after == 1.0 for r in refused)


def test_a_probe_given_up_without_a_verdict_lets_the_next_call_probe(registry: dict[str, Any]) -> None:
    circuit_trip(scope=Scope.MODEL, name=MINI, cooldown_seconds=0.1)
    time.sleep(0.2)
    model = _model()

    async def scenario() -> tuple[bool, bool]:
        [first] = await _passes(model, ["first"])
        assert isinstance(first, Passage) and first.probes
        await first.ended()
        [second] = await _passes(model, ["second"])
        assert isinstance(second, Passage)
        await second.failed(ProviderError(ErrorKind.TIMEOUT, "no answer"))
        [third] = await _passes(model, ["third"])
        return isinstance(third, CircuitOpen), second.probes

    assert asyncio.run(scenario()) == (True, False)


def test_an_unreachable_redis_lets_every_call_through(registry: dict[str, Any], settings: Any) -> None:
    model = _model()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    [outcome] = asyncio.run(_passes(model, ["call"]))

    assert isinstance(outcome, Passage)
    assert not outcome.probes


# The admin --------------------------------------------------------------------------------------


def test_the_admin_shows_a_circuits_state_and_failures_and_trips_and_resets_it(
    call: Any, upstream: FakeOpenAI, superuser_client: Client, registry: dict[str, Any]
) -> None:
    model = registry["models"]["gpt"]
    upstream.queue(FakeOpenAI.server_error())
    call(MINI)

    page = superuser_client.get(f"/admin/routing/languagemodel/{model.pk}/change/").content.decode()
    assert "closed; 1 failure in the window" in page
    assert f"UTC {MINI}: unavailable" in page

    changed = superuser_client.post(
        "/admin/routing/languagemodel/", {"action": "trip_circuits", "_selected_action": [model.pk]}, follow=True
    )
    assert "1 circuit tripped." in changed.content.decode()
    listing = superuser_client.get("/admin/routing/languagemodel/").content.decode()
    assert "open until " in listing
    _refused_by_circuit(call(MINI))

    superuser_client.post("/admin/routing/languagemodel/", {"action": "reset_circuits", "_selected_action": [model.pk]})
    [state] = circuit_states([(Scope.MODEL, MINI)], window_seconds=[60])
    assert state.state == "closed"
    assert state.failures == ()
    assert call(MINI).status_code == 200


def test_the_admin_trips_a_providers_circuit_and_every_model_of_it_is_skipped(
    call: Any, upstream: FakeOpenAI, superuser_client: Client, registry: dict[str, Any]
) -> None:
    up = registry["providers"]["up"]
    superuser_client.post("/admin/routing/provider/", {"action": "trip_circuits", "_selected_action": [up.pk]})

    page = superuser_client.get(f"/admin/routing/provider/{up.pk}/change/").content.decode()
    assert "open until " in page
    assert "(tripped)" in page
    answer = call(MINI)
    assert "provider up's circuit" in _refused_by_circuit(answer)["message"]
    assert booked(answer.headers["x-request-id"]).error_kind == "circuit_open"
    assert upstream.requests == []


def _post_waiting(gateway_url: str, api_key: str, wait: str, where: str) -> httpx.Response:
    body: dict[str, Any] = {"model": MINI, "messages": HI}
    headers = {"authorization": f"Bearer {api_key}"}
    if where == "metadata":
        body["metadata"] = {"circuit_wait": wait}
    else:
        headers["x-switchyard-circuit-wait"] = wait
    return httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("where", ["metadata", "header"])
def test_a_direct_call_that_allows_waiting_waits_for_the_circuit_and_is_answered(
    call: Any, upstream: FakeOpenAI, gateway_url: str, api_key: str, where: str
) -> None:
    circuit_trip(scope=Scope.MODEL, name=MINI, cooldown_seconds=1)

    answer = _post_waiting(gateway_url, api_key, "5", where)

    assert answer.status_code == 200
    record = booked(answer.headers["x-request-id"])
    waited, answered = record.attempts
    assert waited["outcome"] == "circuit_open" and "waited" in waited["message"]
    assert answered["outcome"] == "ok"
    assert len(upstream.requests) == 1


def test_a_wait_shorter_than_the_circuits_reopening_gets_the_503_at_once(
    call: Any, upstream: FakeOpenAI, gateway_url: str, api_key: str
) -> None:
    circuit_trip(scope=Scope.MODEL, name=MINI, cooldown_seconds=30)

    answer = _post_waiting(gateway_url, api_key, "2", "metadata")

    _refused_by_circuit(answer)
    assert 28 <= int(answer.headers["retry-after"]) <= 30
    assert upstream.requests == []


@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "100000"])
def test_a_wait_that_is_not_a_number_of_seconds_within_the_deadline_is_refused_naming_the_field(
    call: Any, gateway_url: str, api_key: str, wait: str
) -> None:
    answer = _post_waiting(gateway_url, api_key, wait, "metadata")

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "metadata.circuit_wait"
