"""Personal data found locally, and calls that carry it kept to providers that keep no data, through every strategy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from routing.catalog import get_catalog
from routing.models import LanguageModel, Provider, Route
from routing.providers.types import ChatRequest, Message, ToolCall
from routing.strategies.base import Hints
from routing.strategies.resolution import NoCapableModel, resolve
from routing.strategies.sensitivity import afind_personal_data, find_personal_data

SENSITIVE = Hints(tags=frozenset({"sensitive"}))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Write to jane.doe+work@example.co.uk about it.", ("email",)),
        ("Call me on +44 20 7946 0958 tomorrow.", ("phone",)),
        ("Our office: (555) 123-4567.", ("phone",)),
        ("Card 4111 1111 1111 1111, exp 12/29", ("card",)),
        ("card: 5500-0000-0000-0004", ("card",)),
        ("Pay to GB82 WEST 1234 5698 7654 32 please", ("iban",)),
        ("IBAN DE89370400440532013000", ("iban",)),
        ("My SSN is 123-45-6789.", ("national_id",)),
        ("NI number AB 12 34 56 C", ("national_id",)),
        ("mail a@b.io, phone +1 415 555 2671", ("email", "phone")),
        ("Reach 555-123-4567 (2nd line) or 3 items", ("phone",)),
        ("Numbers: 12, 13 and then 555.123.4567!", ("phone",)),
    ],
)
def test_it_finds_each_kind_of_personal_data(text: str, found: tuple[str, ...]) -> None:
    assert find_personal_data([text]) == found


@pytest.mark.parametrize(
    "text",
    [
        "Order 4111 1111 1111 1112 shipped",  # fails the Luhn check
        "GB82 WEST 1234 5698 7654 33",  # fails the mod-97 check
        "SSN-like 000-12-3456 and 666-12-3456 are never issued",
        "Compute +1 2 3 and 2026-12-05 and version 1.2.3",
        "The function @decorator runs at 10:30; see x@y",
        "Prime 2305843009213693951 is large",
        "Build 555-123-4567-rc1 and x4111111111111111 and v1.555.123.4567",
        "",
    ],
)
def test_it_does_not_cry_wolf(text: str) -> None:
    assert find_personal_data([text]) == ()


@pytest.fixture
def routes(make_model: Callable[..., LanguageModel], make_route: Callable[..., Route]) -> dict[str, Any]:
    cloud = Provider.objects.create(name="cloud", kind=Provider.Kind.OPENAI, base_url="http://127.0.0.1:9/v1")
    zdr = Provider.objects.create(
        name="zdr", kind=Provider.Kind.OPENAI, base_url="http://127.0.0.1:9/v1", keeps_no_data=True
    )
    local = Provider.objects.create(name="box", kind=Provider.Kind.OLLAMA, base_url="http://127.0.0.1:9")
    models = {
        "cloud": make_model("big", provider=cloud, price=("0.10", "0.40")),
        "zdr": make_model("safe", provider=zdr, price=("1.00", "4.00")),
        "local": make_model("llama", provider=local),
    }
    return {
        "mixed": make_route("mixed", [models["cloud"], models["zdr"], models["local"]]),
        "cloudy": make_route("cloudy", [models["cloud"]]),
        "models": models,
    }


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=text),))


STRATEGIES = [
    ("fixed", {}),
    ("rules", {"rules": [{"when": {"keywords": ["invoice"]}, "to": "cloud/big"}]}),
    ("budget", {}),
    ("weighted", {"weights": {"cloud/big": 100, "zdr/safe": 1}}),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("strategy", "settings"), STRATEGIES, ids=[name for name, _ in STRATEGIES])
def test_personal_data_never_reaches_a_provider_that_may_keep_it_whatever_the_strategy(
    routes: dict[str, Any], strategy: str, settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    route = routes["mixed"]
    route.strategy, route.settings = strategy, settings
    route.full_clean()
    route.save()
    caplog.set_level(logging.INFO)

    resolution = resolve(get_catalog(), "mixed", ask("Send the invoice to jane@example.com"))

    assert "cloud/big" not in resolution.chain and resolution.chain
    assert set(resolution.chain) <= {"zdr/safe", "box/llama"}
    assert {"model": "cloud/big", "reason": "the request holds personal data (email): its provider may keep data"} in (
        resolution.skipped
    )
    assert resolution.routing["sensitivity"] == {"found": ["email"], "tagged": False}
    assert "personal data (email)" in caplog.text and "jane@example.com" not in caplog.text
    # Without personal data, the same route may use every model.
    assert "cloud/big" in resolve(get_catalog(), "mixed", ask("Send the invoice today")).chain


@pytest.mark.django_db
def test_a_route_with_no_safe_model_refuses_instead_of_leaking(routes: dict[str, Any]) -> None:
    with pytest.raises(NoCapableModel, match=r"holds personal data \(card\).*not sent anywhere") as refused:
        resolve(get_catalog(), "cloudy", ask("Charge 4111 1111 1111 1111"))
    assert refused.value.code == "sensitive_data"
    with pytest.raises(NoCapableModel, match="is tagged sensitive"):
        resolve(get_catalog(), "cloudy", ask("Hello"), hints=SENSITIVE)


@pytest.mark.django_db
def test_personal_data_in_the_system_prompt_or_a_tool_calls_arguments_counts_too(routes: dict[str, Any]) -> None:
    system = ChatRequest(
        messages=(Message(role="user", content="Hi"),), system="The user's IBAN: DE89370400440532013000"
    )
    assert resolve(get_catalog(), "mixed", system).chain == ("zdr/safe", "box/llama")
    tool = ChatRequest(
        messages=(
            Message(role="user", content="Look me up"),
            Message(
                role="assistant", tool_calls=(ToolCall(id="c1", name="lookup", arguments='{"ssn": "123-45-6789"}'),)
            ),
            Message(role="tool", content="found", tool_call_id="c1"),
        )
    )
    assert "cloud/big" not in resolve(get_catalog(), "mixed", tool).chain


@pytest.mark.django_db
def test_a_model_asked_for_by_name_is_refused_only_when_the_request_is_tagged_sensitive(routes: dict[str, Any]) -> None:
    catalog = get_catalog()
    assert resolve(catalog, "cloud/big", ask("jane@example.com")).chain == ("cloud/big",)
    with pytest.raises(NoCapableModel, match="tagged sensitive, and the provider of `cloud/big`"):
        resolve(catalog, "cloud/big", ask("Hello"), hints=SENSITIVE)
    assert resolve(catalog, "zdr/safe", ask("Hello"), hints=SENSITIVE).chain == ("zdr/safe",)


def test_a_long_prompt_is_read_whole_off_the_event_loop() -> None:
    long = ask("Lorem ipsum dolor sit amet. " * 2000 + "Reply to jane@example.com")
    assert asyncio.run(afind_personal_data(long)) == ("email",)
    assert asyncio.run(afind_personal_data(ask("Short and clean."))) == ()
