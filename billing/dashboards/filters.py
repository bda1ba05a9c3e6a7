"""The filters of a team's dashboards, usage list and export, read from the URL so that a view can be shared.

Periods are whole UTC hours, the rollups' grain, so a chart, the usage
list and the export of one URL cover exactly the same calls.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.db.models import Q
from django.utils import timezone

from billing.models import SpendCap
from billing.periods import hour_of, period_bounds

if TYPE_CHECKING:
    from billing.dashboards.access import UsageScope

PERIODS = (
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("month", "This month"),
    ("last-month", "Last month"),
    ("custom", "Custom"),
)
DEFAULT_PERIOD = "30d"
BUCKETS = (("", "Auto"), ("hour", "Hour"), ("day", "Day"), ("week", "Week"), ("month", "Month"))
STACKS = (("model", "Model"), ("user", "User"), ("key", "API key"), ("route", "Route"))
# Stacks that show other members' spend: only for viewers who see members.
MEMBER_STACKS = {"user", "key"}
# Beyond this many buckets a chart is a blur and its query is slow: a coarser bucket is asked for.
MAX_BUCKETS = 800
BUCKET_HOURS = {"hour": 1, "day": 24, "week": 24 * 7, "month": 24 * 30}


@dataclass(frozen=True)
class Filters:
    since: dt.datetime
    until: dt.datetime
    period: str
    bucket: str
    stack: str
    model: str
    route: str
    user_id: int | None
    key_id: int | None

    @classmethod
    def unfiltered(cls, since: dt.datetime, until: dt.datetime) -> Filters:
        """Every call from `since` to `until` (whole UTC hours), narrowed by nothing."""
        return cls(
            since=since,
            until=until,
            period="custom",
            bucket="",
            stack="model",
            model="",
            route="",
            user_id=None,
            key_id=None,
        )

    def rollup_q(self) -> Q:
        """The rollups these filters select (the period, then each filter set)."""
        return Q(hour__gte=self.since, hour__lt=self.until) & self.narrowing()

    def record_q(self) -> Q:
        """The usage records these filters select: the same calls as rollup_q's rollups."""
        return Q(created_at__gte=self.since, created_at__lt=self.until) & self.narrowing()

    def dimensions(self) -> set[str]:
        """The dimensions the filters narrow (model, route, user, key): a day rollup holds one."""
        chosen = {"model": self.model, "route": self.route, "user": self.user_id, "key": self.key_id}
        return {dimension for dimension, value in chosen.items() if value not in ("", None)}

    def narrowing(self) -> Q:
        """The filters but the period."""
        # The same names on every table: a rollup's columns are the record's fields (ids for relations).
        match = Q()
        if self.model:
            match &= Q(model=self.model)
        if self.route:
            match &= Q(route=self.route)
        if self.user_id is not None:
            match &= Q(user_id=self.user_id)
        if self.key_id is not None:
            match &= Q(api_key_id=self.key_id)
        return match

    def query(self, **changes: Any) -> str:
        """These filters as a query string (without "?"), with `changes` applied; empty values left out."""
        values: dict[str, Any] = {
            "period": self.period,
            "since": self.since.date().isoformat() if self.period == "custom" else "",
            "until": (self.until - dt.timedelta(days=1)).date().isoformat() if self.period == "custom" else "",
            "bucket": self.bucket,
            "stack": self.stack,
            "model": self.model,
            "route": self.route,
            "user": self.user_id or "",
            "key": self.key_id or "",
        }
        values.update(changes)
        return urlencode({name: value for name, value in values.items() if value not in ("", None)})

    @property
    def hours(self) -> int:
        return int((self.until - self.since).total_seconds() // 3600)


class FiltersForm(forms.Form):
    period = forms.ChoiceField(choices=PERIODS, required=False)
    since = forms.DateField(required=False, help_text="First day, UTC (custom period).")
    until = forms.DateField(required=False, help_text="Last day, included (custom period).")
    bucket = forms.ChoiceField(choices=BUCKETS, required=False)
    stack = forms.ChoiceField(choices=STACKS, required=False, label="Stack by")
    model = forms.CharField(required=False, max_length=200)
    route = forms.CharField(required=False, max_length=50)
    user: forms.ModelChoiceField[Any] = forms.ModelChoiceField(queryset=None, required=False, empty_label="Everyone")
    key: forms.ModelChoiceField[Any] = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="Every key", label="API key"
    )

    def __init__(self, data: Any, *, access: UsageScope, now: dt.datetime | None = None) -> None:
        if not data.get("period"):
            # The page then shows the period it sums chosen in its menu, not the menu's first.
            data = data.copy()
            data["period"] = DEFAULT_PERIOD
        super().__init__(data)
        self.access = access
        self.now = now or timezone.now()
        user_field = self.fields["user"]
        assert isinstance(user_field, forms.ModelChoiceField)
        user_field.queryset = access.members().order_by("username")
        key_field = self.fields["key"]
        assert isinstance(key_field, forms.ModelChoiceField)
        key_field.queryset = access.keys().order_by("name", "pk")
        if not access.sees_members:
            self.fields["stack"].choices = [c for c in STACKS if c[0] not in MEMBER_STACKS]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # An unknown period is the field's error already; the rest is still checked against the default.
        period = data.get("period") or DEFAULT_PERIOD
        data["period"] = period
        if period == "custom":
            since, until = data.get("since"), data.get("until")
            if since is None or until is None:
                raise forms.ValidationError("A custom period needs its first and last day.")
            if until < since:
                raise forms.ValidationError("The last day is before the first.")
        bounds = filter_bounds(period, self.now, data.get("since"), data.get("until"))
        bucket = data.get("bucket") or auto_bucket(bounds[1] - bounds[0])
        if (bounds[1] - bounds[0]).total_seconds() / 3600 / BUCKET_HOURS[bucket] > MAX_BUCKETS:
            raise forms.ValidationError(f"Too many {bucket}s in this period to draw: choose a coarser bucket.")
        data["bounds"] = bounds
        data["bucket"] = bucket
        return data

    def filters(self) -> Filters:
        """The filters, once the form is valid."""
        data = self.cleaned_data
        since, until = data["bounds"]
        return Filters(
            since=since,
            until=until,
            period=data["period"],
            bucket=data["bucket"],
            stack=data.get("stack") or "model",
            model=data.get("model", ""),
            route=data.get("route", ""),
            user_id=data["user"].pk if data.get("user") else None,
            key_id=data["key"].pk if data.get("key") else None,
        )


def filter_bounds(
    period: str, now: dt.datetime, since: dt.date | None = None, until: dt.date | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """[since, until) of a period in whole UTC hours; the current hour is included."""
    next_hour = hour_of(now) + dt.timedelta(hours=1)
    if period == "24h":
        return next_hour - dt.timedelta(hours=24), next_hour
    if period == "7d":
        return next_hour - dt.timedelta(days=7), next_hour
    if period == "month":
        return period_bounds(SpendCap.Period.MONTH, now)[0], next_hour
    if period == "last-month":
        first = period_bounds(SpendCap.Period.MONTH, now)[0]
        return period_bounds(SpendCap.Period.MONTH, first - dt.timedelta(days=1))
    if period == "custom":
        assert since is not None and until is not None
        start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
        return start, dt.datetime.combine(until, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1)
    assert period == DEFAULT_PERIOD
    return next_hour - dt.timedelta(days=30), next_hour


def auto_bucket(length: dt.timedelta) -> str:
    if length <= dt.timedelta(days=2):
        return "hour"
    if length <= dt.timedelta(days=92):
        return "day"
    if length <= dt.timedelta(days=400):
        return "week"
    return "month"
