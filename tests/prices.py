"""The price of a model at a moment, as calls are priced: from the registry's snapshot (routing/catalog.py)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from routing.catalog import PriceRow, get_catalog
from routing.models import LanguageModel


def price_at(model: LanguageModel, when: dt.datetime | None = None) -> PriceRow | None:
    return get_catalog().models[model.public_id].price_at(when or timezone.now())
