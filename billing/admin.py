"""The billing admin: teams and their members, API keys, spend caps, and the usage ledger.

Two promises it keeps: an API key shows nothing but its prefix (the hash
stays in the database), and usage records are read-only, since each is
what one call cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

import redis
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR, ChangeList
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Field, ForeignKey, IntegerField, Model, OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from billing.caps.counters import COST_UNITS, cap_spent
from billing.models import UNPRICED, ApiKey, RateLimit, SpendCap, Team, TeamMembership, UsageRecord
from billing.money import format_usd, from_units
from billing.periods import period_bounds
from billing.services import api_key_revoke
from billing.usage_csv import usage_csv_response
from routing.models import LanguageModel, Provider, Route

if TYPE_CHECKING:
    from django.contrib.admin.filters import _ListFilterChoices
    from django_stubs_ext import WithAnnotations


class TeamTotals(TypedDict):
    """What TeamAdmin's list annotates each team with (None where a subquery finds no row)."""

    month_units: int | Decimal | None  # PostgreSQL sums a bigint as a numeric
    members: int | None
    active_keys: int | None
    caps: int | None


if TYPE_CHECKING:
    TeamWithTotals = WithAnnotations[Team, TeamTotals]


class TeamMembershipInline(admin.TabularInline[TeamMembership, Team]):
    model = TeamMembership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    list_display = ("name", "slug", "member_count", "active_key_count", "spent_this_month", "cap_count")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)
    inlines = (TeamMembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[TeamWithTotals]:
        month_start, _ = period_bounds(SpendCap.Period.MONTH, timezone.now())
        spend = (
            UsageRecord.objects.filter(team=OuterRef("pk"), created_at__gte=month_start, cost_usd__isnull=False)
            .order_by()
            .values("team")
            .annotate(units=Sum(COST_UNITS))
            .values("units")
        )
        # Subqueries, not joins: joined counts would multiply each other.
        members = TeamMembership.objects.filter(team=OuterRef("pk")).order_by().values("team").annotate(n=Count("pk"))
        keys = (
            ApiKey.objects.filter(team=OuterRef("pk"), revoked_at__isnull=True)
            .order_by()
            .values("team")
            .annotate(n=Count("pk"))
        )
        caps_set = SpendCap.objects.filter(team=OuterRef("pk")).order_by().values("team").annotate(n=Count("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                month_units=Subquery(spend),
                members=Subquery(members.values("n"), output_field=IntegerField()),
                active_keys=Subquery(keys.values("n"), output_field=IntegerField()),
                caps=Subquery(caps_set.values("n"), output_field=IntegerField()),
            )
        )

    @admin.display(description="members", ordering="members")
    def member_count(self, obj: TeamWithTotals) -> int:
        return obj.members or 0

    @admin.display(description="active API keys", ordering="active_keys")
    def active_key_count(self, obj: TeamWithTotals) -> int:
        return obj.active_keys or 0

    @admin.display(description="spent this month (UTC)", ordering="month_units")
    def spent_this_month(self, obj: TeamWithTotals) -> str:
        return format_usd(from_units(int(obj.month_units or 0)), rounded=True)

    @admin.display(description="spend caps", ordering="caps")
    def cap_count(self, obj: TeamWithTotals) -> int:
        return obj.caps or 0


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    """Keys are created where their plain value can be shown once (`manage.py create_api_key`), not here."""

    list_display = ("key", "name", "user", "team", "created_at", "last_used_at", "status")
    list_filter = (KeyStatusFilter, "team")
    list_select_related = ("user", "team")
    search_fields = ("name", "prefix", "user__username", "team__name")
    fields = ("key", "name", "user", "team", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("key", "user", "created_at", "last_used_at", "revoked_at")
    autocomplete_fields = ("team",)
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="key", ordering="prefix")
    def key(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="status", ordering="revoked_at")
    def status(self, obj: ApiKey) -> str:
        return "active" if obj.is_active else f"revoked {obj.revoked_at:%Y-%m-%d %H:%M}"

    @admin.action(description="Revoke selected API keys", permissions=("change",))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        active = list(queryset.filter(revoked_at__isnull=True))
        for key in active:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {len(active)} API key(s); they stop working at once.", messages.SUCCESS)


@admin.register(RateLimit)
class RateLimitAdmin(admin.ModelAdmin[RateLimit]):
    list_display = ("applies_to", "requests_per_minute", "tokens_per_minute", "enabled")
    list_filter = ("enabled", "per_key")
    list_select_related = ("user", "team", "api_key")
    search_fields = ("user__username", "team__name", "team__slug", "api_key__name", "api_key__prefix")
    autocomplete_fields = ("user", "team", "api_key")
    readonly_fields = ("created_at",)
    fieldsets = (
        ("Applies to", {"fields": ("user", "team", "per_key", "api_key"), "description": "Exactly one of them."}),
        (None, {"fields": ("requests_per_minute", "tokens_per_minute", "enabled", "created_at")}),
    )

    @admin.display(description="applies to")
    def applies_to(self, obj: RateLimit) -> str:
        return obj.subject_label


@admin.register(SpendCap)
class SpendCapAdmin(admin.ModelAdmin[SpendCap]):
    list_display = (
        "applies_to",
        "period",
        "limit",
        "spent_this_period",
        "used",
        "warns_at",
        "resets_at",
        "enabled",
    )
    list_filter = ("period", "enabled")
    list_select_related = ("user", "team", "api_key")
    search_fields = ("user__username", "team__name", "team__slug", "api_key__name", "api_key__prefix")
    autocomplete_fields = ("user", "team", "api_key")
    readonly_fields = ("spent_this_period", "resets_at", "created_at")
    fieldsets = (
        ("Applies to", {"fields": ("user", "team", "api_key"), "description": "Exactly one of them."}),
        (None, {"fields": ("limit_usd", "period", "soft_threshold", "enabled")}),
        ("This period", {"fields": ("spent_this_period", "resets_at", "created_at")}),
    )

    @admin.display(description="applies to")
    def applies_to(self, obj: SpendCap) -> str:
        return obj.subject_label

    @admin.display(description="limit", ordering="limit_usd")
    def limit(self, obj: SpendCap) -> str:
        return format_usd(obj.limit_usd, rounded=True)

    def _spent(self, obj: SpendCap) -> Decimal | None:
        if obj.pk is None:
            return None
        try:
            return cap_spent(obj)
        except redis.RedisError:
            return None

    @admin.display(description="spent this period")
    def spent_this_period(self, obj: SpendCap) -> str:
        spent = self._spent(obj)
        return "–" if spent is None else format_usd(spent, rounded=True)

    @admin.display(description="used")
    def used(self, obj: SpendCap) -> str:
        spent = self._spent(obj)
        if spent is None:
            return "–"
        if spent >= obj.limit_usd:
            return "used up"
        return f"{int(spent * 100 / obj.limit_usd)}%"

    @admin.display(description="warns at", ordering="soft_threshold")
    def warns_at(self, obj: SpendCap) -> str:
        return f"{(obj.soft_threshold * 100).normalize():f}%"

    @admin.display(description="resets at (UTC)")
    def resets_at(self, obj: SpendCap) -> str:
        if obj.pk is None:
            return "–"
        return f"{period_bounds(obj.period, timezone.now())[1]:%Y-%m-%d %H:%M}"


class UsageStatusFilter(admin.SimpleListFilter):
    """Status, plus "unpriced": answered, but no price was known, so no cost was booked."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [*UsageRecord.Status.choices, ("unpriced", "Unpriced")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        value = self.value()
        if value == "unpriced":
            return queryset.filter(UNPRICED)
        if value in UsageRecord.Status.values:
            return queryset.filter(status=value)
        return queryset


class AutocompleteFilter(admin.FieldListFilter):
    """A foreign key's filter that searches its rows, with the admin's autocomplete, instead of listing them.

    Django's related filters list every user (or key, or team), or every one
    the ledger names, which is a DISTINCT over all its records on each page
    load. This one reads the selected row only. The related model's admin
    needs search_fields, and the staff user the view permission on it.
    """

    template = "admin/billing/autocomplete_filter.html"

    def __init__(
        self,
        field: Field[Any, Any],
        request: HttpRequest,
        params: dict[str, list[str]],
        model: type[Model],
        model_admin: admin.ModelAdmin[Any],
        field_path: str,
    ) -> None:
        assert isinstance(field, ForeignKey), "AutocompleteFilter filters on a foreign key"
        self.lookup_kwarg = f"{field_path}__{field.target_field.name}__exact"
        self.related: type[Model] = field.remote_field.model
        self.admin_site = model_admin.admin_site
        super().__init__(field, request, params, model, model_admin, field_path)
        # "API key" rather than the field's "api key".
        self.title = self.related._meta.verbose_name

    def expected_parameters(self) -> list[str | None]:
        return [self.lookup_kwarg]

    def value(self) -> list[str]:
        value = self.used_parameters.get(self.lookup_kwarg)
        return value if isinstance(value, list) else []

    def choices(self, changelist: ChangeList) -> Iterator[_ListFilterChoices]:
        yield {
            "selected": not self.value(),
            "query_string": changelist.get_query_string(remove=[self.lookup_kwarg]),
            "display": "All",
        }

    def select(self) -> SafeString:
        """The search box, showing the selected row."""
        chooser = forms.ModelChoiceField(
            self.related._default_manager.all(),
            required=False,
            widget=AutocompleteSelect(self.field, self.admin_site, attrs={"data-width": "100%"}),
        )
        html: SafeString = chooser.widget.render(self.lookup_kwarg, self.value())
        return html

    def other_parameters(self) -> list[tuple[str, str]]:
        """The page's other filters, search and ordering, which choosing here keeps."""
        dropped = {self.lookup_kwarg, PAGE_VAR, ERROR_FLAG}
        return [(name, value) for name, values in self.request.GET.lists() if name not in dropped for value in values]


class RegistryFilter(admin.SimpleListFilter):
    """A filter whose choices come from the registry's small tables, not from a DISTINCT over the ledger.

    A value the registry no longer has (a model since deleted) still filters,
    and stays listed while it is selected.
    """

    # The registry table and its name column: the values of the ledger's column of the same parameter_name.
    registry: type[Model]
    name_field: str

    def names(self) -> list[str]:
        """Every name the registry has."""
        return list(self.registry._default_manager.values_list(self.name_field, flat=True))

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        names = set(self.names())
        if self.value():
            names.add(str(self.value()))
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
        value = self.value()
        # Each is named after the field it filters, as Django's field filters are (?model=…).
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class ModelFilter(RegistryFilter):
    title = "model"
    parameter_name = "model"

    registry = LanguageModel
    name_field = "public_id"


class RouteFilter(RegistryFilter):
    title = "route"
    parameter_name = "route"

    registry = Route
    name_field = "name"


class ProviderFilter(RegistryFilter):
    title = "provider"
    parameter_name = "provider"

    registry = Provider
    name_field = "name"


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin[UsageRecord]):
    # Seven columns, most of two lines, and css/admin-usage.css: together they fit
    # beside the admin's navigation and the filters in a 1400 px window.
    list_display = ("call", "caller", "answered_by", "outcome", "tokens", "cost", "latency")
    list_filter = (
        UsageStatusFilter,
        ("team", AutocompleteFilter),
        ("user", AutocompleteFilter),
        ("api_key", AutocompleteFilter),
        ModelFilter,
        RouteFilter,
        ProviderFilter,
        "source",
    )
    list_select_related = ("user", "team")
    date_hierarchy = "created_at"
    search_fields = ("=request_id",)
    # An exact count of millions of rows costs more than the page itself, and so
    # do the filters' counts.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = ("why",)

    def get_urls(self) -> list[URLPattern]:
        export = path("export/", self.admin_site.admin_view(self.export_view), name="billing_usagerecord_export")
        return [export, *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The list's records, as filtered, searched and ordered by the same query string, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            # The list itself says what is wrong with them.
            return redirect(f"{reverse('admin:billing_usagerecord_changelist')}?{request.GET.urlencode()}")
        return usage_csv_response(request, changelist.queryset)

    @property
    def media(self) -> forms.Media:
        autocomplete = AutocompleteSelect(UsageRecord._meta.get_field("user"), self.admin_site).media
        # The filters' script after jquery.init.js, which it needs: Media orders only what lists order.
        own = forms.Media(
            js=["admin/js/jquery.init.js", "js/admin-autocomplete-filter.js"], css={"all": ["css/admin-usage.css"]}
        )
        return super().media + autocomplete + own

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    @admin.display(description="why this model")
    def why(self, obj: UsageRecord) -> str:
        """A link to the call's page, which reads its trace (only a team's calls have one)."""
        if obj.team_id is None:
            return "–"
        return format_html(
            '<a href="{}">the routing trace, on the call\'s page</a>', reverse("call-record", args=[obj.request_id])
        )

    @admin.display(description="created at / request id", ordering="created_at")
    def call(self, obj: UsageRecord) -> str:
        """When the call was made, in the site's time zone (UTC), and under it its request id."""
        return two_lines(formats.localize(timezone.localtime(obj.created_at)), obj.request_id)

    @admin.display(description="caller")
    def caller(self, obj: UsageRecord) -> str:
        """The user, and under it the team the call was booked to."""
        return two_lines(breakable(obj.user.get_username() if obj.user else "–"), obj.team.name if obj.team else "")

    @admin.display(description="model", ordering="model")
    def answered_by(self, obj: UsageRecord) -> str:
        """The model that answered, and under it what the client asked for (a route, say) when that differs."""
        asked = "" if obj.requested == obj.model else breakable(f"asked {obj.requested}")
        return two_lines(breakable(obj.model or "–"), asked)

    @admin.display(description="status", ordering="status")
    def outcome(self, obj: UsageRecord) -> str:
        return two_lines(obj.get_status_display(), breakable(obj.error_kind))

    @admin.display(description="tokens in / out")
    def tokens(self, obj: UsageRecord) -> str:
        text = f"{obj.input_tokens:,} / {obj.output_tokens:,}"
        return f"{text} (estimated)" if obj.tokens_estimated else text

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj: UsageRecord) -> str:
        if obj.cost_usd is None:
            return "unpriced" if obj.model else "–"
        return format_usd(obj.cost_usd)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: UsageRecord) -> str:
        return f"{obj.latency_ms:,} ms"


def two_lines(value: str, qualifier: str) -> str:
    """A cell's value, and under it, quieter, what qualifies it, if anything does."""
    return format_html('{}<div class="quiet">{}</div>', value, qualifier) if qualifier else value


def breakable(text: str) -> SafeString:
    """Text that may wrap after its separators, which names and ids need in a narrow column.

    Browsers do not break "claude-3-5-sonnet-20241022" before a digit, nor
    "insufficient_quota" at all.
    """
    # Safe: escaped first, then given <wbr> tags only.
    return mark_safe(re.sub(r"([/\-_.@])", r"\1<wbr>", str(escape(text))))
