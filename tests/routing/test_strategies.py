"""Routing strategies: each on requests whose right choice is known, the trace that explains it, and their settings."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from routing.catalog import get_catalog
from routing.models import LanguageModel, Route
from routing.providers.types import ChatRequest, Message
from routing.strategies.base import Hints
from routing.strategies.registry import STRATEGIES
from routing.strategies.resolution import NoCapableModel, Resolution, reasons, resolve

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.UTC)


def ask(text: str, **fields: Any) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=text),), **fields)


def route_to(requested: str, request: ChatRequest, **kwargs: Any) -> Resolution:
    return resolve(get_catalog(), requested, request, now=NOW, **kwargs)


@pytest.fixture
def models(make_model: Callable[..., LanguageModel]) -> dict[str, LanguageModel]:
    return {
        "mini": make_model("mini", price=("0.10", "0.40")),
        "mid": make_model("mid", price=("1.00", "4.00"), capabilities=["tools"]),
        "pro": make_model("pro", price=("10.00", "40.00"), capabilities=["tools", "vision"]),
        "local": make_model("local"),
        "coder": make_model("coder", price=("0.50", "2.00")),
    }


def configured(route: Route, strategy: str, settings: dict[str, Any]) -> Route:
    """The route with a strategy, saved through the same checks as the admin's form."""
    route.strategy = strategy
    route.settings = settings
    route.full_clean()
    route.save()
    return route


def test_a_fixed_chain_is_tried_in_its_order_and_says_so(models: Any, make_route: Callable[..., Route]) -> None:
    make_route("auto", [models["mid"], models["mini"]])

    resolution = route_to("auto", ask("Hello"))

    assert resolution.chain == ("sim/mid", "sim/mini")
    assert resolution.routing == {"route": "auto", "strategy": "fixed", "reason": "fixed chain", "inputs": {}}


def test_rules_send_code_to_a_coding_route_and_support_tags_to_a_model(
    models: Any, make_route: Callable[..., Route]
) -> None:
    coding = make_route("coding", [models["coder"], models["mid"]])
    configured(coding, "budget", {})
    auto = make_route("auto", [models["mini"], models["mid"]])
    configured(
        auto,
        "rules",
        {
            "rules": [
                {"name": "code", "when": {"code": True}, "to": "coding"},
                {"name": "refunds", "when": {"tags": ["support"], "keywords": ["refund"]}, "to": "sim/pro"},
                {"name": "long", "when": {"min_chars": 200}, "to": "sim/mid"},
            ]
        },
    )

    code = route_to("auto", ask("Why does this fail?\n```python\nprint(1/0)\n```"))
    assert code.route == "auto" and code.chain == ("sim/coder", "sim/mid")
    assert code.routing["inputs"]["rule"] == "code" and code.routing["then"]["strategy"] == "budget"
    assert reasons(code.routing).startswith("auto: rule 'code' → route coding; coding: cheapest")

    refund = route_to("auto", ask("I want a REFUND, now."), hints=Hints(tags=frozenset({"support"})))
    assert refund.chain == ("sim/pro", "sim/mini", "sim/mid")
    assert refund.routing["reason"] == "rule 'refunds' → sim/pro"

    # The keyword alone, without the tag, is not enough; the length rule is next.
    untagged = route_to("auto", ask("refund " * 40))
    assert untagged.chain == ("sim/mid", "sim/mini")

    plain = route_to("auto", ask("Hi"))
    assert plain.chain == ("sim/mini", "sim/mid")
    assert plain.routing["reason"] == "no rule matched: the route's chain"


def test_a_rule_whose_model_cannot_take_the_call_is_passed_over_and_the_trace_says_why(
    models: Any, make_route: Callable[..., Route]
) -> None:
    auto = make_route("auto", [models["pro"]])
    configured(
        auto,
        "rules",
        {"rules": [{"name": "pictures", "when": {"images": True}, "to": "sim/mid"}]},
    )
    request = ChatRequest(messages=(Message(role="user", content="What is this?", images=("https://x/y.png",)),))

    resolution = route_to("auto", request)

    assert resolution.chain == ("sim/pro",)
    assert resolution.routing["inputs"]["passed_over"] == [
        {"rule": "pictures", "model": "sim/mid", "reason": "lacks vision"}
    ]


def test_routes_that_send_each_other_round_in_a_loop_refuse_the_call_clearly(
    models: Any, make_route: Callable[..., Route]
) -> None:
    a = make_route("a", [models["mini"]])
    b = make_route("b", [models["mini"]])
    configured(a, "rules", {"rules": [{"when": {"min_chars": 0}, "to": "b"}]})
    configured(b, "rules", {"rules": [{"when": {"min_chars": 0}, "to": "a"}]})

    with pytest.raises(NoCapableModel, match=r"in a loop or too deep \(a → b → a\)") as refused:
        route_to("a", ask("Hi"))
    assert refused.value.code == "route_misconfigured"


def test_complexity_sends_each_prompt_to_its_bands_model_and_a_long_conversation_up_a_band(
    models: Any, make_route: Callable[..., Route]
) -> None:
    bands = [
        {"name": "easy", "below": 0.1, "model": "sim/mini"},
        {"name": "medium", "below": 0.4, "model": "sim/mid"},
        {"name": "hard", "model": "sim/pro"},
    ]
    make_route("auto", [models["mini"], models["mid"], models["pro"]], strategy="complexity", settings={"bands": bands})

    quick = route_to("auto", ask("What is the capital of France?"))
    assert quick.chain == ("sim/mini", "sim/mid", "sim/pro")
    assert quick.routing["inputs"] == {"score": 0.003, "band": "easy", "turns": 1}  # 6 words of 400 for length
    assert quick.routing["reason"] == "complexity 0.00 → band easy → sim/mini"

    code = route_to("auto", ask("Write a Python function that merges two sorted lists."))
    assert code.chain == ("sim/mid", "sim/mini", "sim/pro")
    assert code.routing["inputs"]["band"] == "medium"

    hard = route_to(
        "auto",
        ask(
            "Why does this recursion overflow? Explain step by step and prove the bound.\n"
            "```python\ndef f(n):\n    return f(n - 1) + 1\n```\nTraceback (most recent call last): RecursionError"
        ),
    )
    assert hard.chain == ("sim/pro", "sim/mini", "sim/mid")
    assert hard.routing["inputs"]["score"] >= 0.4

    # The same quick question five user turns deep scores 0.2 more: the next band.
    turns = tuple(
        Message(role=role, content=text)
        for _ in range(4)
        for role, text in (("user", "And then?"), ("assistant", "Then more."))
    )
    deep = route_to(
        "auto", ChatRequest(messages=(*turns, Message(role="user", content="What is the capital of France?")))
    )
    assert deep.routing["inputs"] == {"score": 0.203, "band": "medium", "turns": 5}
    assert deep.chain[0] == "sim/mid"


def test_budget_tries_the_cheapest_first_and_leaves_out_what_is_over_the_ceiling(
    models: Any, make_route: Callable[..., Route]
) -> None:
    cheap = make_route("cheap", [models["pro"], models["mid"], models["mini"], models["local"]])
    configured(cheap, "budget", {"max_price": "0.01", "output_tokens": 1000})

    resolution = route_to("cheap", ask("Summarise the news."))

    # 1,000 output tokens: pro $0.04 is over $0.01; mid about $0.004, mini $0.0004; local has no price.
    assert resolution.chain == ("sim/mini", "sim/mid")
    skipped = {s["model"]: s["reason"] for s in resolution.skipped}
    assert skipped["sim/pro"].startswith("expected $0.04") and "over the ceiling of $0.01" in skipped["sim/pro"]
    assert skipped["sim/local"] == "no price: it cannot be shown to fit the price ceiling"
    inputs = resolution.routing["inputs"]
    assert inputs["ceiling_usd"] == "0.01" and inputs["output_tokens"] == 1000
    input_tokens = inputs["input_tokens"]
    expected = (Decimal(input_tokens) * Decimal("0.10") + 1000 * Decimal("0.40")) / 1_000_000
    assert Decimal(inputs["expected_usd"]["sim/mini"]) == expected


def test_a_callers_price_ceiling_lowers_the_routes_never_raises_it(
    models: Any, make_route: Callable[..., Route]
) -> None:
    cheap = make_route("cheap", [models["pro"], models["mid"], models["mini"]])
    configured(cheap, "budget", {"max_price": "0.01", "output_tokens": 1000})

    lower = route_to("cheap", ask("Hi"), hints=Hints(max_price=Decimal("0.001")))
    assert lower.chain == ("sim/mini",)
    higher = route_to("cheap", ask("Hi"), hints=Hints(max_price=Decimal("1")))
    assert higher.chain == ("sim/mini", "sim/mid")
    # The request's own max_tokens is the expected answer's length.
    short = route_to("cheap", ask("Hi", max_tokens=100), hints=Hints(max_price=Decimal("0.005")))
    assert short.chain == ("sim/mini", "sim/mid", "sim/pro")

    with pytest.raises(NoCapableModel, match=r"expected to cost at most \$0.000001 .*the cheapest, sim/mini"):
        route_to("cheap", ask("Hi"), hints=Hints(max_price=Decimal("0.000001")))


def test_a_weighted_split_keeps_a_session_on_one_model_and_shares_calls_by_weight(
    models: Any, make_route: Callable[..., Route]
) -> None:
    ab = make_route("ab", [models["mini"], models["mid"]])
    configured(ab, "weighted", {"weights": {"sim/mini": 80, "sim/mid": 20}})

    first = route_to("ab", ask("Hi"), hints=Hints(session="conversation-1"), caller="user:1")
    for _ in range(5):
        again = route_to("ab", ask("And then?"), hints=Hints(session="conversation-1"), caller="user:2")
        assert again.chain == first.chain
    assert set(first.chain) == {"sim/mini", "sim/mid"}
    assert first.routing["inputs"] == {"weights": {"sim/mini": 80, "sim/mid": 20}, "sticky": "session"}

    chosen = Counter(route_to("ab", ask("Hi"), hints=Hints(session=f"s{n}")).chain[0] for n in range(1000))
    assert 740 <= chosen["sim/mini"] <= 860, chosen

    by_caller = {route_to("ab", ask("Hi"), caller="key:7").chain for _ in range(3)}
    assert len(by_caller) == 1


@pytest.mark.parametrize(
    ("strategy", "settings", "error"),
    [
        ("fixed", {"x": 1}, "A fixed chain takes no settings"),
        ("rules", {}, "'rules' must be a non-empty list"),
        ("rules", {"rules": [{"when": {"code": True}, "to": "sim/nope"}]}, "Rule 1 sends to 'sim/nope'"),
        ("rules", {"rules": [{"when": {}, "to": "sim/mini"}]}, "Rule 1 needs at least one condition"),
        ("rules", {"rules": [{"when": {"regex": "(unclosed"}, "to": "sim/mini"}]}, "not a valid pattern"),
        ("rules", {"rules": [{"when": {"category": ["poetry"]}, "to": "sim/mini"}]}, "unknown category 'poetry'"),
        ("rules", {"rules": [{"when": {"colour": "red"}, "to": "sim/mini"}]}, "unknown condition 'colour'"),
        ("complexity", {"bands": [{"model": "sim/mini"}]}, "'bands' must list 2 to 8 bands"),
        ("complexity", {"bands": [{"below": 0.5, "model": "sim/mini"}, {"model": "sim/nope"}]}, "'model' must name"),
        (
            "complexity",
            {"bands": [{"below": 0.5, "model": "sim/mini"}, {"below": 0.4, "model": "sim/mid"}, {"model": "sim/pro"}]},
            "'below' must be a score above 0.5",
        ),
        (
            "complexity",
            {"bands": [{"below": 0.5, "model": "sim/mini"}, {"below": 1, "model": "sim/pro"}]},
            "no 'below'",
        ),
        (
            "complexity",
            {"bands": [{"name": "a", "below": 0.5, "model": "sim/mini"}, {"name": "a", "model": "sim/pro"}]},
            "used twice",
        ),
        ("budget", {"max_price": "-1"}, "not negative"),
        ("budget", {"max_price": "cheap"}, "an amount in USD"),
        ("budget", {"output_tokens": 0}, "at least 1"),
        ("weighted", {"weights": {"sim/mini": 0}}, "At least one weight must be above 0"),
        ("weighted", {"weights": {"sim/mini": 1}, "sticky": "forever"}, "'sticky' must be one of"),
        ("weighted", [], "must be a JSON object"),
        (
            "classifier",
            {"categories": {"a": "sim/mini", "b": "sim/mid"}},
            "'model' must name the model that classifies",
        ),
        ("classifier", {"model": "sim/mini", "categories": {"a": "sim/mini"}}, "'categories' must map 2 to 12"),
        ("classifier", {"model": "sim/mini", "categories": {"Big Words": "sim/mini", "b": "sim/mid"}}, "lower-case"),
        ("classifier", {"model": "sim/mini", "categories": {"a": "sim/mini", "b": "sim/nope"}}, "no model 'sim/nope'"),
        (
            "classifier",
            {"model": "sim/mini", "categories": {"a": "sim/mini", "b": "sim/mid"}, "timeout_ms": 0},
            "'timeout_ms' must be a whole number of milliseconds",
        ),
    ],
)
def test_settings_a_strategy_cannot_use_are_refused_in_words(
    models: Any, make_route: Callable[..., Route], strategy: str, settings: Any, error: str
) -> None:
    route = make_route("auto", [models["mini"]])
    route.strategy = strategy
    route.settings = settings
    with pytest.raises(ValidationError) as refused:
        route.full_clean()
    assert error in " ".join(refused.value.message_dict["settings"])


def test_a_route_saved_with_bad_settings_behind_the_admins_back_is_refused_not_run(
    models: Any, make_route: Callable[..., Route]
) -> None:
    make_route("auto", [models["mini"]], strategy="budget", settings={"max_price": "lots"})

    with pytest.raises(NoCapableModel, match="Route `auto` cannot be used: its strategy settings are invalid"):
        route_to("auto", ask("Hi"))


def test_the_admin_edits_a_routes_strategy_and_shows_a_settings_error_in_the_form(
    models: Any, make_route: Callable[..., Route], superuser_client: Client, page_form: Any
) -> None:
    route = make_route("auto", [models["mini"], models["mid"]])
    url = f"/admin/routing/route/{route.pk}/change/"
    form = page_form(superuser_client, url, "route_form")

    form["strategy"] = "budget"
    form["settings"] = '{"max_price": "nope"}'
    page = superuser_client.post(url, form)
    assert page.status_code == 200
    assert "&#x27;max_price&#x27; must be an amount in USD" in page.content.decode()

    form["settings"] = "{not json"
    assert "Enter a valid JSON" in superuser_client.post(url, form).content.decode()

    form["settings"] = '{"max_price": "0.02"}'
    assert superuser_client.post(url, form).status_code == 302
    route.refresh_from_db()
    assert (route.strategy, route.settings) == ("budget", {"max_price": "0.02"})
    assert route_to("auto", ask("Hi")).routing["strategy"] == "budget"


def test_every_strategys_example_in_the_admin_is_settings_it_takes(superuser_client: Client) -> None:
    names = frozenset({"coding", "sim/atlas", "sim/sage-pro"})
    for strategy in STRATEGIES.values():
        assert strategy.check_settings(strategy.example, names) is not None
    page = superuser_client.get("/admin/routing/route/add/").content.decode()
    assert 'budget: {"max_price": "0.002", "output_tokens": 600}' in page


def test_a_classifier_route_resolved_without_its_models_answer_lets_the_local_scorer_choose(
    models: Any, make_route: Callable[..., Route]
) -> None:
    make_route(
        "auto",
        [models["mini"], models["coder"]],
        strategy="classifier",
        settings={"model": "sim/mini", "categories": {"quick": "sim/mini", "coding": "sim/coder"}},
    )

    coding = route_to("auto", ask("Fix this Python traceback: KeyError in my function"))
    quick = route_to("auto", ask("Who wrote 1984?"), classifications={"auto": {"category": "quick", "by": "sim/mini"}})

    assert coding.chain == ("sim/coder", "sim/mini")
    assert coding.routing["inputs"] == {
        "classifier": "sim/mini",
        "category": "coding",
        "by": "local scorer",
        "why": "not asked",
    }
    assert quick.routing["reason"] == "quick (by sim/mini) → sim/mini"
