"""The cascade strategy: its checks, its settings, what a capped caller reserves, and its admin page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from routing.calls.answer_checks import answer_failure
from routing.calls.reservation import spec_for_capped_caller
from routing.calls.spec import CallSpec
from routing.catalog import get_catalog
from routing.models import LanguageModel, Route
from routing.providers.types import ChatRequest, Message, ResponseFormat
from routing.strategies.resolution import resolve
from tests.usage_ledger import book, usage_record

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)
ON = {"min_chars": 20, "json": True, "refusal": True, "truncated": True}


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=text),), **fields)


@pytest.mark.parametrize(
    ("answer", "finish", "fields", "failure"),
    [
        ("Paris is the capital of France, on the Seine.", "stop", {}, ""),
        ("Paris.", "stop", {}, "the answer is too short (6 characters, at least 20)"),
        ("I'm sorry, but I can't help with that request.", "stop", {}, "the answer is a refusal"),
        ("I cannot assist with this, as it would be unsafe.", "stop", {}, "the answer is a refusal"),
        ("I can help: the capital of France is Paris.", "stop", {}, ""),
        ("A long answer that ran out of room before its end", "length", {}, "the answer stopped at its token limit"),
        ('{"capital": "Paris"}', "stop", {"response_format": ResponseFormat(type="json_object")}, ""),
        (
            "The capital is Paris, in JSON: {capital: Paris}",
            "stop",
            {"response_format": ResponseFormat(type="json_object")},
            "JSON was asked for, and the answer is not valid JSON",
        ),
    ],
)
def test_each_check_fails_the_answers_it_is_for_and_passes_the_rest(
    answer: str, finish: str, fields: dict[str, Any], failure: str
) -> None:
    assert answer_failure(ask("What is the capital of France?", **fields), answer, finish, ON) == failure


def test_a_check_turned_off_lets_its_answers_through() -> None:
    off = {"min_chars": 0, "json": False, "refusal": False, "truncated": False}
    request = ask("Hi", response_format=ResponseFormat(type="json_object"))
    assert answer_failure(request, "I can't help with that.", "length", off) == ""


@pytest.fixture
def tiers(make_model: Callable[..., LanguageModel], make_route: Callable[..., Route]) -> Route:
    route = make_route(
        "tiers",
        [make_model("mini", price=("0.10", "0.40")), make_model("pro", price=("10.00", "40.00"))],
        strategy="cascade",
        settings={"min_chars": 40},
    )
    route.full_clean()
    route.save()
    return route


def test_the_tiers_are_the_routes_order_and_the_checks_travel_with_the_call(tiers: Route) -> None:
    resolution = resolve(get_catalog(), "tiers", ask("Hello"), now=NOW)

    assert resolution.chain == ("sim/mini", "sim/pro")
    assert resolution.checks == {"min_chars": 40, "json": True, "refusal": True, "truncated": True, "learn": False}
    assert resolution.routing["reason"] == "cascade from sim/mini"


def test_a_rule_can_send_a_call_to_a_cascade_route(
    tiers: Route, make_model: Callable[..., LanguageModel], make_route: Callable[..., Route]
) -> None:
    auto = make_route(
        "auto",
        [make_model("other")],
        strategy="rules",
        settings={"rules": [{"name": "faq", "when": {"keywords": ["refund"]}, "to": "tiers"}]},
    )
    auto.full_clean()

    resolution = resolve(get_catalog(), "auto", ask("How do I get a refund?"), now=NOW)

    assert resolution.chain == ("sim/mini", "sim/pro")
    assert resolution.checks["min_chars"] == 40


def test_a_capped_caller_reserves_every_tiers_worst_case_a_fallback_only_the_dearest(tiers: Route) -> None:
    catalog = get_catalog()
    request = ask("Hello", max_tokens=100)
    cascade = resolve(catalog, "tiers", request, now=NOW)
    spec = CallSpec(
        call_id="c1", created_at=NOW, requested="tiers", chain=cascade.chain, request=request, checks=cascade.checks
    )
    alone = {
        m: spec_for_capped_caller(catalog, CallSpec("c", NOW, "tiers", (m,), request)).reserved_units
        for m in spec.chain
    }

    assert spec_for_capped_caller(catalog, spec).reserved_units == sum(alone.values())
    fallback = CallSpec(call_id="c2", created_at=NOW, requested="tiers", chain=cascade.chain, request=request)
    assert spec_for_capped_caller(catalog, fallback).reserved_units == max(alone.values())


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"min_chars": -1}, "'min_chars' must be a whole number"),
        ({"json": "yes"}, "'json' must be true or false"),
        ({"checks": []}, "Unknown setting 'checks'"),
    ],
)
def test_settings_it_cannot_use_are_refused_in_words(tiers: Route, settings: dict[str, Any], error: str) -> None:
    tiers.settings = settings
    with pytest.raises(ValidationError) as refused:
        tiers.full_clean()
    assert error in " ".join(refused.value.message_dict["settings"])


def test_the_routes_admin_page_shows_its_escalation_rate(tiers: Route, superuser_client: Client) -> None:
    url = f"/admin/routing/route/{tiers.pk}/change/"
    assert "No calls in the last 30 days." in superuser_client.get(url).content.decode()
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    book(
        usage_record(at=at, route="tiers", model="sim/pro", escalations=1),
        *(usage_record(at=at, route="tiers", model="sim/mini") for _ in range(3)),
        usage_record(at=at, route="other", model="sim/pro", escalations=1),
    )

    page = superuser_client.get(url).content.decode()

    assert "25.0% of the last 4 calls (1) were escalated by a cascade" in page
