"""Savings: what a period's calls cost through their routes, against the same calls on one chosen model.

The comparison is a replay (replay.py) on a chain of that one model: each
call re-priced at that model's price of the call's hour, the calls it could
not have served counted apart with what they really cost. By default the
model is the dearest that answered any of the period's calls: what the
team would have paid had it sent everything to its best model.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms

from billing.dashboards.charts import compared_chart
from billing.money.replay import NotReplayable, Replay, chain_of, replay, replay_under
from billing.money.selectors import PeriodSums, answering_models, period_sums
from billing.services import price_of

if TYPE_CHECKING:
    from billing.dashboards.access import TeamAccess
    from billing.dashboards.filters import Filters
    from routing.catalog import Catalog, CatalogModel


def priced(model: CatalogModel) -> bool:
    """Whether a model has a price to re-price calls at (some day of its price book), or is free."""
    return model.free or bool(model.prices)


def dearest(models: list[CatalogModel], at: dt.datetime) -> CatalogModel | None:
    """The model whose input and output prices per million, in force at `at`, add up to the most."""
    prices = [(price, model) for model in models if (price := price_of(model, at)) is not None]
    if not prices:
        return None
    _, model = max(prices, key=lambda pair: (pair[0].input_per_million + pair[0].output_per_million, pair[1].public_id))
    return model


class MoneyForm(forms.Form):
    """The savings page's own choices, beside the team's filters: the model compared with, the replay's route."""

    compare = forms.ChoiceField(required=False, label="Compared with")
    replay = forms.ChoiceField(required=False, label="Replay under")

    def __init__(self, data: Any, *, catalog: Catalog) -> None:
        super().__init__(data)
        self.catalog = catalog
        models = sorted(name for name, model in catalog.models.items() if priced(model))
        routes = sorted(name for name, route in catalog.routes.items() if route.chain)
        self.fields["compare"].choices = [("", "The dearest model that answered"), *((m, m) for m in models)]  # type: ignore[attr-defined]
        self.fields["replay"].choices = [  # type: ignore[attr-defined]
            ("Routes", [(f"route:{name}", name) for name in routes]),
            ("Models", [(f"model:{name}", name) for name in models]),
        ]

    def clean_replay(self) -> str:
        chosen: str = self.cleaned_data.get("replay") or ""
        if not chosen:
            routes = sorted(name for name, route in self.catalog.routes.items() if route.chain)
            return f"route:{routes[0]}" if routes else ""
        kind, _, name = chosen.partition(":")
        if kind == "route":
            try:
                chain_of(self.catalog, self.catalog.routes[name])
            except NotReplayable as error:
                raise forms.ValidationError(str(error)) from error
        return chosen


@dataclass(frozen=True)
class Savings:
    """The period through its routes against one model; None as `compared` when no model answered with a price."""

    compared: Replay | None

    @property
    def saved(self) -> Decimal | None:
        """What the routes saved against the model (negative: what they cost more)."""
        return None if self.compared is None else self.compared.total.difference

    @property
    def cost_more(self) -> Decimal | None:
        """What the routes cost more than the model would have (negative: what they saved)."""
        return None if self.saved is None else -self.saved


def savings(
    access: TeamAccess,
    filters: Filters,
    catalog: Catalog,
    compare: str = "",
    *,
    everything: PeriodSums | None = None,
) -> Savings:
    """The filters' calls against `compare` (a model's public id), or against the dearest model that answered.

    `everything`: the filters' period_sums, when the caller read them already.
    """
    if compare:
        model: CatalogModel | None = catalog.models[compare]
    else:
        answered = answering_models(access, filters)
        models = [catalog.models[name] for name in answered if name in catalog.models]
        model = dearest(models, filters.until - dt.timedelta(microseconds=1))
    if model is None:
        return Savings(compared=None)
    if everything is None:
        everything = period_sums(access, filters, catalog)
    return Savings(compared=replay(access, filters, [model], under=f"model {model.public_id}", everything=everything))


def money_figures(access: TeamAccess, filters: Filters, catalog: Catalog, choices: dict[str, str]) -> dict[str, Any]:
    """What the savings page shows for valid filters and choices (MoneyForm.cleaned_data), charts included."""
    # One read of the rollups for both parts of the page.
    everything = period_sums(access, filters, catalog)
    figures: dict[str, Any] = {
        "savings": savings(access, filters, catalog, choices.get("compare") or "", everything=everything)
    }
    if under := choices.get("replay") or "":
        figures["replay"] = replay_under(access, filters, catalog, under, everything=everything)
    if "replay" in figures:
        replayed = figures["replay"]
        figures["replay_chart"] = compared_chart(
            replayed.days, real="Through their routes", replayed=f"Under {replayed.under}"
        )
    return figures
