"""The cost calculator's page (/teams/<slug>/calculator/): its forms, read from the URL, and what it shows.

The rows are a formset in the query string, so a calculation can be
shared as a link. Its buttons (add a row, remove one, fill from the last
30 days) rewrite the rows on the server, which answers with the rows as
they now are; the figures come from billing/money/calculator.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.http import QueryDict

from billing.money.calculator import (
    Estimate,
    Fill,
    Load,
    RecentUsage,
    calculator_estimate,
    loads_from,
    recent_usage,
)
from billing.services import price_of
from playground.selectors import context_window_of, picker_options
from routing.catalog import Catalog, get_catalog

if TYPE_CHECKING:
    from billing.dashboards.access import TeamAccess

PREFIX = "rows"
FIELDS = ("task", "target", "requests", "input_tokens", "output_tokens")
MAX_ROWS = 20
# Sane maxima: beyond them a figure is a typing slip, not a plan.
MAX_REQUESTS = 1_000_000_000
MAX_INPUT_TOKENS = 2_000_000
MAX_OUTPUT_TOKENS = 1_000_000

Choices = list[tuple[str, Any]]


class LoadForm(forms.Form):
    """One task type's month: its requests, their average tokens, and the route or model that answers them."""

    task = forms.CharField(label="Task type", max_length=60, strip=True)
    target = forms.ChoiceField(
        label="Route or model",
        error_messages={"invalid_choice": "%(value)s is not an enabled route or model of this Switchyard."},
    )
    requests = forms.IntegerField(label="Requests a month", min_value=0, max_value=MAX_REQUESTS)
    input_tokens = forms.IntegerField(label="Average input tokens", min_value=0, max_value=MAX_INPUT_TOKENS)
    output_tokens = forms.IntegerField(label="Average output tokens", min_value=0, max_value=MAX_OUTPUT_TOKENS)

    def __init__(self, *args: Any, catalog: Catalog, targets: Choices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalog = catalog
        cast(forms.ChoiceField, self.fields["target"]).choices = targets
        # The rows are a table whose headers are the labels: each field still names itself to a screen reader.
        for field in self.fields.values():
            field.widget.attrs["aria-label"] = field.label
        self.fields["task"].widget.attrs["placeholder"] = "coding, chat, summarising…"
        for name in ("requests", "input_tokens", "output_tokens"):
            self.fields[name].widget.attrs["placeholder"] = str(self.fields[name].label).lower()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # a form's clean() returns its cleaned_data
        target, tokens = cleaned.get("target"), cleaned.get("input_tokens")
        if target and tokens is not None:
            window = context_window_of(self.catalog, target)
            # A window of 0 is one the registry does not know: nothing to check against.
            if 0 < window < tokens:
                self.add_error("input_tokens", f"{target} takes at most {window:,} tokens of input.")
        return cleaned

    def load(self) -> Load:
        data = self.cleaned_data
        return Load(data["task"], data["target"], data["requests"], data["input_tokens"], data["output_tokens"])


LoadFormSet = forms.formset_factory(
    LoadForm, extra=0, min_num=0, max_num=MAX_ROWS, validate_max=True, absolute_max=MAX_ROWS
)


class CompareForm(forms.Form):
    compare = forms.ChoiceField(
        label="Compare with",
        error_messages={"invalid_choice": "%(value)s is not an enabled model of this Switchyard."},
    )

    def __init__(self, *args: Any, models: Choices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["compare"]).choices = models


def default_compare(catalog: Catalog, at: dt.datetime) -> str:
    """The usable model whose tokens cost the most today (input and output per million): what a plan is set against."""
    usable = sorted((model for model in catalog.models.values() if model.usable), key=lambda model: model.public_id)
    priced = [(model, price) for model in usable if (price := price_of(model, at)) is not None]
    if priced:
        dearest, _ = max(priced, key=lambda item: item[1].input_per_million + item[1].output_per_million)
        return dearest.public_id
    return usable[0].public_id if usable else ""


def form_data(rows: list[dict[str, Any]], compare: str) -> QueryDict:
    """The calculator's query string for these rows (each a dict of FIELDS, missing ones blank)."""
    data = QueryDict(mutable=True)
    data.update(
        {
            f"{PREFIX}-TOTAL_FORMS": str(len(rows)),
            # Every row is an "extra" form: a blank one is skipped, not an error.
            f"{PREFIX}-INITIAL_FORMS": "0",
            f"{PREFIX}-MIN_NUM_FORMS": "0",
            f"{PREFIX}-MAX_NUM_FORMS": str(MAX_ROWS),
        }
    )
    for i, row in enumerate(rows):
        for name in FIELDS:
            if (value := row.get(name)) not in (None, ""):
                data[f"{PREFIX}-{i}-{name}"] = str(value)
    data["compare"] = compare
    return data


def raw_rows(query: QueryDict) -> list[dict[str, str]]:
    """The rows of the query string as typed, for a button to rewrite; none when their count cannot be read."""
    try:
        total = min(max(int(query.get(f"{PREFIX}-TOTAL_FORMS", "0")), 0), MAX_ROWS)
    except ValueError:
        total = 0
    return [{name: query.get(f"{PREFIX}-{i}-{name}", "") for name in FIELDS} for i in range(total)]


def load_fields(load: Load) -> dict[str, Any]:
    return {
        "task": load.task,
        "target": load.target,
        "requests": load.requests,
        "input_tokens": load.input_tokens,
        "output_tokens": load.output_tokens,
    }


@dataclass
class CalculatorPage:
    formset: Any
    compare_form: CompareForm
    estimate: Estimate | None
    # Set after "fill from the last 30 days", with what it found.
    fill: Fill | None
    # The query string of the rows shown, for the address bar after a button rewrote them.
    query: str
    max_rows: int = MAX_ROWS


def _targets(catalog: Catalog, at: dt.datetime) -> tuple[Choices, Choices, frozenset[str]]:
    """The choices of a row (enabled routes, then usable models), of the compared model, and a row's valid values."""
    options = picker_options(catalog=catalog, at=at)
    routes = [(option.value, option.value) for option in options if option.is_route]
    models = [
        (option.value, option.value if price_of(catalog.models[option.value], at) else f"{option.value} (no price)")
        for option in options
        if not option.is_route
    ]
    return [("", "Choose…"), ("Routes", routes), ("Models", models)], models, frozenset(o.value for o in options)


def calculator_page(*, access: TeamAccess, query: QueryDict, now: dt.datetime) -> CalculatorPage:
    """The calculator for the URL's rows, after its button's action (`action`: add, remove-<row>, fill)."""
    catalog = get_catalog()
    targets, models, offered = _targets(catalog, now)
    compare = query.get("compare") or default_compare(catalog, now)
    action = query.get("action", "")
    usage: RecentUsage | None = None
    fill: Fill | None = None
    data = query if f"{PREFIX}-TOTAL_FORMS" in query else form_data([{}], compare)
    if "compare" not in data:
        data = data.copy()
        data["compare"] = compare
    if action == "fill":
        usage = recent_usage(access, now=now)
        fill = loads_from(usage, limit=MAX_ROWS, offered=offered)
        if fill.loads:
            data = form_data([load_fields(load) for load in fill.loads], compare)
    elif action == "add":
        rows = raw_rows(query)
        data = form_data([*rows, {}] if len(rows) < MAX_ROWS else rows, compare)
    elif action.startswith("remove-"):
        rows = raw_rows(query)
        index = action.removeprefix("remove-")
        data = form_data([row for i, row in enumerate(rows) if str(i) != index], compare)
    formset = LoadFormSet(data, prefix=PREFIX, form_kwargs={"catalog": catalog, "targets": targets})
    compare_form = CompareForm(data, models=models)
    estimate = None
    if formset.is_valid() and compare_form.is_valid():
        loads = [form.load() for form in formset.forms if form.has_changed()]
        if loads:
            if usage is None and any(load.target not in catalog.models for load in loads):
                usage = recent_usage(access, now=now)
            mixes = usage.mixes() if usage is not None else {}
            compared = compare_form.cleaned_data["compare"]
            estimate = calculator_estimate(catalog=catalog, loads=loads, compare=compared, mixes=mixes, at=now)
    shown = data.copy()
    shown.pop("action", None)
    return CalculatorPage(formset, compare_form, estimate, fill, shown.urlencode())
