"""/v1's errors as an OpenAI SDK sees them: the same status, shape and exception class as against OpenAI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from billing.models import UsageRecord
from tests.fakes.openai import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "Hi"}]
ERROR_FIELDS = {"message", "type", "param", "code"}


def _assert_openai_error(response: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == ERROR_FIELDS
    assert error["code"] == code
    return error


# Request bodies over the limit -------------------------------------------


@pytest.fixture
def small_body_limit(settings: Any) -> int:
    # The gateway runs in this process, so the override reaches it.
    settings.API_MAX_BODY_BYTES = 1000
    return 1000


def test_a_body_over_the_limit_is_refused_with_413_in_openais_shape(
    client: openai.OpenAI, upstream: FakeOpenAI, small_body_limit: int
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=[{"role": "user", "content": "x" * 2000}])

    assert type(caught.value) is openai.APIStatusError, "413 has no subclass of its own in the SDK"
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"
    assert set(caught.value.body) == ERROR_FIELDS
    assert "1000 bytes" in caught.value.message
    assert upstream.requests == []
    assert UsageRecord.objects.count() == 0


def test_a_chunked_body_over_the_limit_is_refused_too(
    gateway_url: str, api_key: str, registry: dict[str, Any], small_body_limit: int
) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}]}'

    # A generator body goes out chunked, with no Content-Length to refuse it by.
    response = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        content=body(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        timeout=10,
    )

    assert "content-length" not in response.request.headers
    _assert_openai_error(response, 413, "request_too_large")


def test_a_body_within_the_limit_goes_through(client: openai.OpenAI, small_body_limit: int) -> None:
    completion = client.chat.completions.create(model="up/gpt-4o-mini", messages=HI)

    assert completion.choices[0].message.content


def test_nan_and_infinity_are_not_json_and_are_refused(gateway_url: str, api_key: str, client: openai.OpenAI) -> None:
    # Python's json module reads them; no JSON parser of a provider does.
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        response = httpx.post(
            f"{gateway_url}/v1/chat/completions",
            content=b'{"model": "up/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "temperature": '
            + constant
            + b"}",
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=10,
        )
        error = _assert_openai_error(response, 400, None)
        assert "could not parse the JSON body" in error["message"]
    assert UsageRecord.objects.count() == 0


# Each status raises the SDK exception it raises against OpenAI -----------


def test_an_invalid_body_raises_bad_request_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HI, temperature=5)

    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"
    assert caught.value.type == "invalid_request_error"


def test_a_malformed_response_format_names_the_field(client: openai.OpenAI) -> None:
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "x", "description": 7, "schema": {}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HI, response_format=response_format)

    assert caught.value.param == "response_format.json_schema.description"


def test_an_upstream_refusal_of_the_prompt_raises_bad_request_error(
    client: openai.OpenAI, upstream: FakeOpenAI
) -> None:
    upstream.queue(FakeOpenAI.context_too_long())

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HI)

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert caught.value.response.headers["x-request-id"].startswith("chatcmpl-")


def test_a_bad_key_raises_authentication_error(gateway_url: str, registry: dict[str, Any]) -> None:
    stranger = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="sk-sy-not-a-key", max_retries=0, timeout=10)

    with pytest.raises(openai.AuthenticationError) as caught:
        stranger.chat.completions.create(model="up/gpt-4o-mini", messages=HI)

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_a_missing_key_raises_authentication_error(gateway_url: str) -> None:
    response = httpx.post(f"{gateway_url}/v1/chat/completions", json={"model": "auto", "messages": HI}, timeout=10)

    _assert_openai_error(response, 401, "invalid_api_key")


def test_an_unknown_model_raises_not_found_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope/nothing", messages=HI)

    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_an_unknown_model_id_raises_not_found_error_on_retrieve(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nope/nothing")

    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_failing_upstream_raises_internal_server_error_502(
    client: openai.OpenAI, upstream: FakeOpenAI, stream: bool
) -> None:
    upstream.queue(FakeOpenAI.server_error())

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="up/gpt-4o-mini", messages=HI, stream=stream)

    assert caught.value.status_code == 502
    assert caught.value.type == "server_error"
    assert "up/gpt-4o-mini=unavailable" in caught.value.message


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_overloaded_chain_raises_internal_server_error_503(
    client: openai.OpenAI, upstream: FakeOpenAI, stream: bool
) -> None:
    upstream.queue(FakeOpenAI.rate_limited(retry_after="3"), FakeOpenAI.overloaded())

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="auto", messages=HI, stream=stream)

    assert caught.value.status_code == 503
    attempts = caught.value.response.headers["x-switchyard-attempts"]
    assert attempts == "up/gpt-4o-mini=rate_limited, up2/gpt-4o=overloaded"


# Paths and methods that are not part of the API --------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/chat/completion"),
        ("GET", "/v1"),
        ("GET", "/v1/"),
    ],
)
def test_an_unknown_v1_path_is_a_json_404_never_html(gateway_url: str, api_key: str, method: str, path: str) -> None:
    response = httpx.request(method, f"{gateway_url}{path}", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)

    error = _assert_openai_error(response, 404, "unknown_url")
    assert path in error["message"]
    assert "<html" not in response.text.lower()


def test_an_unknown_v1_path_raises_not_found_error_in_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.get("/embeddings", cast_to=object)

    assert caught.value.code == "unknown_url"


def test_get_on_chat_completions_is_a_json_405(gateway_url: str, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}

    response = httpx.get(f"{gateway_url}/v1/chat/completions", headers=headers, timeout=10)

    _assert_openai_error(response, 405, None)
    assert response.headers["allow"] == "POST"


def test_post_on_models_is_a_json_405(gateway_url: str, api_key: str) -> None:
    response = httpx.post(f"{gateway_url}/v1/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)

    _assert_openai_error(response, 405, None)
    assert response.headers["allow"] == "GET"


def test_a_405_raises_api_status_error_in_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.get("/chat/completions", cast_to=object)

    assert caught.value.status_code == 405
