"""A small registry cast for the admin, service and demo tests, and a browser-like form reader."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from routing.models import LanguageModel, ModelPrice, Provider, Route, RouteStep

FormData = dict[str, Any]


class _FormReader(HTMLParser):
    """Collects what a browser would submit from the form with id `form_id`."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: tuple[str, bool] | None = None
        self._select_values: list[str] = []
        self._first_option: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if not self.inside or "__prefix__" in a.get("name", ""):
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in {"submit", "button", "file", "image", "reset"}:
                return
            if kind in {"checkbox", "radio"}:
                if "checked" in a:
                    self.fields.append((a["name"], a.get("value", "on")))
                return
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select" and a.get("name"):
            self._select = (a["name"], "multiple" in a)
            self._select_values, self._first_option = [], None
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
            if "selected" in a:
                self._select_values.append(value)
        elif tag == "textarea" and a.get("name"):
            self._textarea, self._text = a["name"], []

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.inside:
            self.inside = False
        elif tag == "select" and self._select is not None:
            name, multiple = self._select
            values = self._select_values or ([] if multiple or self._first_option is None else [self._first_option])
            self.fields.extend((name, value) for value in values)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            # Browsers drop the one newline that follows <textarea>.
            self.fields.append((self._textarea, "".join(self._text).removeprefix("\n")))
            self._textarea = None


def read_form(html: str, form_id: str) -> FormData:
    """The fields of form `form_id` as a browser would post them: a str per name, a list if repeated."""
    reader = _FormReader(form_id)
    reader.feed(html)
    data: FormData = {}
    for name, value in reader.fields:
        if name in data:
            previous = data[name]
            data[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            data[name] = value
    return data


@pytest.fixture
def superuser_client(db: None) -> Client:
    """A client logged in as a superuser (no password: hashing one costs half a second)."""
    user = get_user_model().objects.create_superuser(username="root", email="root@example.com", password=None)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def page_form() -> Callable[[Client, str, str], FormData]:
    """GET an admin page and return the named form's fields, ready to edit and post back."""

    def get(client: Client, url: str, form_id: str) -> FormData:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return read_form(response.content.decode(), form_id)

    return get


@pytest.fixture
def sim() -> Provider:
    return Provider.objects.create(name="sim", kind=Provider.Kind.SIMULATED)


@pytest.fixture
def make_model(sim: Provider) -> Callable[..., LanguageModel]:
    def make(
        name: str,
        *,
        provider: Provider | None = None,
        enabled: bool = True,
        capabilities: list[str] | None = None,
        price: tuple[str, str] | None = None,
        price_from: dt.datetime | None = None,
        max_output_tokens: int = 4_096,
    ) -> LanguageModel:
        provider = provider or sim
        model = LanguageModel.objects.create(
            public_id=f"{provider.name}/{name}",
            provider=provider,
            upstream_name=name,
            context_window=32_768,
            max_output_tokens=max_output_tokens,
            capabilities=capabilities or [],
            enabled=enabled,
        )
        if price:
            ModelPrice.objects.create(
                model=model,
                valid_from=price_from or dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
                input_per_million=Decimal(price[0]),
                output_per_million=Decimal(price[1]),
            )
        return model

    return make


@pytest.fixture
def make_route() -> Callable[..., Route]:
    def make(name: str, chain: list[LanguageModel], **fields: Any) -> Route:
        route = Route.objects.create(name=name, **fields)
        for position, model in enumerate(chain, 1):
            RouteStep.objects.create(route=route, model=model, position=position)
        return route

    return make
