"""The admin: where people edit providers, models, prices and routes.

Rules live in routing/services.py and the forms in routing/forms.py; this
module only lays out pages. Two promises it keeps: a provider's API key never
leaves the server (not in pages, history or logs), and the price book is
append-only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import redis
from adminsortable2.admin import SortableAdminBase, SortableTabularInline
from django.contrib import admin, messages
from django.db.models import Field, ForeignKey, QuerySet, URLField
from django.forms import Field as FormField
from django.forms import Form, ModelChoiceField, ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.views.decorators.debug import sensitive_post_parameters

from billing.money import format_usd
from billing.selectors import ESCALATION_WINDOW_DAYS, route_escalations
from routing import selectors, services
from routing.forms import (
    GradedSetAdminForm,
    LanguageModelAdminForm,
    ModelPriceAdminForm,
    ModelPriceInlineFormSet,
    ProviderAdminForm,
    RouteAdminForm,
    RouteStepFormSet,
)
from routing.models import (
    Capability,
    CascadeOutcome,
    GradedSet,
    LanguageModel,
    ModelPrice,
    Provider,
    Route,
    RouterModel,
    RouteStep,
)
from routing.resilience.circuits import CircuitState, Scope, circuit_reset, circuit_states, circuit_trip
from routing.strategies.registry import CHOICES as STRATEGY_CHOICES

if TYPE_CHECKING:
    from routing.selectors import CountedProvider, PricedModel


def _warn_about_broken_chains(request: HttpRequest, what: str, routes: list[Route]) -> None:
    if routes:
        names = ", ".join(route.name for route in routes)
        messages.warning(
            request,
            f"{what} is in the fallback chain of: {names}. Those chains now hold a model that cannot be used, "
            "and the routes cannot be saved again until it is removed from them or enabled again.",
        )


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin[Provider]):
    form = ProviderAdminForm
    list_display = (
        "name",
        "display_name",
        "kind",
        "base_url",
        "key_status",
        "enabled",
        "keeps_no_data",
        "model_count",
        "circuit",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "display_name")
    readonly_fields = ("key_status", "circuit_now", "created_at", "updated_at")
    actions = ("trip_circuits", "reset_circuits")
    fieldsets = (
        (None, {"fields": ("name", "display_name", "kind", "base_url", "enabled", "keeps_no_data")}),
        ("API key", {"fields": ("api_key_env", "key_status", "api_key", "clear_api_key")}),
        ("Connection", {"fields": ("timeout_seconds", "connect_timeout_seconds", "options")}),
        (
            "Circuit breaker",
            {
                "fields": ("circuit_failures", "circuit_window_seconds", "circuit_cooldown_seconds", "circuit_now"),
                "description": "A model that fails this often within the window is skipped by every route until "
                "its cooldown ends; the provider's own circuit opens when such failures come from more than one "
                "of its models, and skips them all.",
            },
        ),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[CountedProvider]:
        return selectors.providers_with_model_count()

    def formfield_for_dbfield(self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any) -> FormField | None:
        if isinstance(db_field, URLField):
            kwargs.setdefault("assume_scheme", "https")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="key status")
    def key_status(self, obj: Provider) -> str:
        return obj.key_status()

    @admin.display(description="models", ordering="model_count")
    def model_count(self, obj: CountedProvider) -> int:
        return obj.model_count

    @admin.display(description="circuit")
    def circuit(self, obj: Provider) -> str:
        return _provider_circuit(obj).summary()

    @admin.display(description="circuit now")
    def circuit_now(self, obj: Provider) -> str:
        return _circuit_details(_provider_circuit(obj)) if obj.pk else "closed"

    @admin.action(description="Trip the circuits of the selected providers (skip them for their cooldown)")
    def trip_circuits(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        _circuits_change(request, Scope.PROVIDER, [(p.name, p.circuit_cooldown_seconds) for p in queryset], trip=True)

    @admin.action(description="Reset the circuits of the selected providers (close them)")
    def reset_circuits(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        _circuits_change(request, Scope.PROVIDER, [(p.name, 0) for p in queryset], trip=False)

    # The key must not appear in Django's error reports either.
    @method_decorator(sensitive_post_parameters("api_key"))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Provider, form: Form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        new_key = form.cleaned_data.get("api_key")
        if new_key:
            services.provider_api_key_set(provider=obj, plain_key=new_key)
            if not obj.enabled:
                messages.info(request, f"The key of {obj.name} is stored. Enable the provider to route calls to it.")
        elif form.cleaned_data.get("clear_api_key") and obj.has_stored_key:
            services.provider_api_key_set(provider=obj, plain_key="")
        if change and "enabled" in form.changed_data and not obj.enabled:
            _warn_about_broken_chains(
                request, f"Provider {obj.name} is disabled; at least one of its models", _routes_of_provider(obj)
            )


def _provider_circuit(provider: Provider) -> CircuitState:
    [state] = circuit_states([(Scope.PROVIDER, provider.name)], window_seconds=[provider.circuit_window_seconds])
    return state


def _model_circuit(model: LanguageModel) -> CircuitState:
    window = model.provider.circuit_window_seconds
    [state] = circuit_states([(Scope.MODEL, model.public_id)], window_seconds=[window])
    return state


def _circuit_details(state: CircuitState) -> str:
    """The state in a line, then the failures within the window, newest first."""
    lines = [(state.summary(),)]
    lines += [(f"{failure.at:%H:%M:%S} UTC {failure.model}: {failure.kind}",) for failure in state.failures]
    return format_html_join(mark_safe("<br>"), "{}", lines)


def _circuits_change(request: HttpRequest, scope: Scope, circuits: list[tuple[str, float]], *, trip: bool) -> None:
    """Trip each (name, cooldown) circuit of `scope`, or reset it, and say so."""
    done = "tripped" if trip else "reset"
    try:
        for name, cooldown in circuits:
            if trip:
                circuit_trip(scope=scope, name=name, cooldown_seconds=cooldown)
            else:
                circuit_reset(scope=scope, name=name)
    except redis.RedisError as exc:
        messages.error(request, f"Redis did not answer, so not every circuit was {done}: {exc}")
        return
    messages.success(request, f"{len(circuits)} circuit{'' if len(circuits) == 1 else 's'} {done}.")


def _routes_of_provider(provider: Provider) -> list[Route]:
    return selectors.routes_using(models=LanguageModel.objects.filter(provider=provider))


class CapabilityFilter(admin.SimpleListFilter):
    title = "capability"
    parameter_name = "capability"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return list(Capability.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> QuerySet[LanguageModel]:
        capability = self.value()
        if capability not in Capability.values:
            return queryset
        return queryset.filter(pk__in=selectors.model_ids_with_capability(capability=capability))


class ModelPriceInline(admin.TabularInline[ModelPrice, LanguageModel]):
    """The price book of one model: past rows read-only, one empty row for a new price."""

    model = ModelPrice
    formset = ModelPriceInlineFormSet
    fields = (
        "valid_from",
        "input_per_million",
        "output_per_million",
        "cached_input_per_million",
        "cache_write_per_million",
    )
    ordering = ("-valid_from",)
    extra = 1
    can_delete = False
    verbose_name_plural = "prices (history is read-only: a new price is a new row)"

    def get_max_num(self, request: HttpRequest, obj: LanguageModel | None = None, **kwargs: Any) -> int:
        return (obj.prices.count() if obj else 0) + 1

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin[LanguageModel]):
    form = LanguageModelAdminForm
    inlines = [ModelPriceInline]
    list_display = (
        "public_id",
        "provider",
        "upstream_name",
        "context",
        "price",
        "capability_list",
        "enabled",
        "circuit",
    )
    list_filter = ("provider", "provider__kind", "enabled", "free", CapabilityFilter)
    search_fields = ("public_id", "upstream_name", "display_name")
    readonly_fields = ("circuit_now", "created_at", "updated_at")
    actions = ("trip_circuits", "reset_circuits")
    fieldsets = (
        (None, {"fields": ("public_id", "provider", "upstream_name", "display_name", "enabled", "free")}),
        ("Limits and capabilities", {"fields": ("context_window", "max_output_tokens", "capabilities")}),
        ("Adapter options", {"fields": ("options",)}),
        ("Circuit breaker (its settings are the provider's)", {"fields": ("circuit_now",)}),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[PricedModel]:
        return selectors.models_with_current_price()

    @admin.display(description="context window", ordering="context_window")
    def context(self, obj: LanguageModel) -> str:
        return f"{obj.context_window:,}"

    @admin.display(description="USD / 1M in / out")
    def price(self, obj: PricedModel) -> str:
        if obj.free:
            return "free"
        if obj.current_input_per_million is None:
            return "no price"
        return f"{format_usd(obj.current_input_per_million)} / {format_usd(obj.current_output_per_million)}"

    @admin.display(description="capabilities")
    def capability_list(self, obj: LanguageModel) -> str:
        return ", ".join(obj.capabilities or [])

    @admin.display(description="circuit")
    def circuit(self, obj: LanguageModel) -> str:
        return _model_circuit(obj).summary()

    @admin.display(description="circuit now")
    def circuit_now(self, obj: LanguageModel) -> str:
        return _circuit_details(_model_circuit(obj)) if obj.pk else "closed"

    @admin.action(description="Trip the circuits of the selected models (skip them for their cooldown)")
    def trip_circuits(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        circuits = [(m.public_id, m.provider.circuit_cooldown_seconds) for m in queryset.select_related("provider")]
        _circuits_change(request, Scope.MODEL, circuits, trip=True)

    @admin.action(description="Reset the circuits of the selected models (close them)")
    def reset_circuits(self, request: HttpRequest, queryset: QuerySet[LanguageModel]) -> None:
        _circuits_change(request, Scope.MODEL, [(m.public_id, 0) for m in queryset], trip=False)

    def save_model(self, request: HttpRequest, obj: LanguageModel, form: Form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "enabled" in form.changed_data and not obj.enabled:
            _warn_about_broken_chains(
                request, f"Model {obj.public_id} is disabled; it", selectors.routes_using(models=[obj])
            )


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin[ModelPrice]):
    """The whole price book. Rows can be added (through model_price_set), never changed or deleted."""

    form = ModelPriceAdminForm
    list_display = (
        "model",
        "provider",
        "valid_from",
        "input_price",
        "output_price",
        "cached_input_price",
        "cache_write_price",
        "created_at",
    )
    list_filter = ("model__provider", "model")
    list_select_related = ("model__provider",)
    search_fields = ("model__public_id",)
    date_hierarchy = "valid_from"
    ordering = ("model__public_id", "-valid_from")

    @admin.display(description="provider", ordering="model__provider__name")
    def provider(self, obj: ModelPrice) -> Provider:
        return obj.model.provider

    @admin.display(description="input USD / 1M", ordering="input_per_million")
    def input_price(self, obj: ModelPrice) -> str:
        return format_usd(obj.input_per_million)

    @admin.display(description="output USD / 1M", ordering="output_per_million")
    def output_price(self, obj: ModelPrice) -> str:
        return format_usd(obj.output_per_million)

    @admin.display(description="cached input USD / 1M", ordering="cached_input_per_million")
    def cached_input_price(self, obj: ModelPrice) -> str:
        return _or_input_price(obj.cached_input_per_million)

    @admin.display(description="cache write USD / 1M", ordering="cache_write_per_million")
    def cache_write_price(self, obj: ModelPrice) -> str:
        return _or_input_price(obj.cache_write_per_million)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: ModelForm[ModelPrice], change: bool) -> None:
        price = services.model_price_set(
            model=obj.model,
            input_per_million=obj.input_per_million,
            output_per_million=obj.output_per_million,
            cached_input_per_million=obj.cached_input_per_million,
            cache_write_per_million=obj.cache_write_per_million,
            valid_from=obj.valid_from,
        )
        # The admin goes on to log and redirect to `obj`: make it the saved row.
        obj.pk, obj.created_at = price.pk, price.created_at
        obj._state.adding = False


def _or_input_price(amount: Decimal | None) -> str:
    # A blank cache price is billed at the input price, which "–" (an unknown amount) would not say.
    return "as input" if amount is None else format_usd(amount)


class RouteStepInline(SortableTabularInline):
    model = RouteStep
    formset = RouteStepFormSet
    fields = ("model",)
    verbose_name = "step"
    verbose_name_plural = "fallback chain (first model first; drag to reorder)"

    def get_extra(self, request: HttpRequest, obj: Route | None = None, **kwargs: Any) -> int:
        return 0 if obj else 1

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        if db_field.name == "model":
            kwargs["queryset"] = LanguageModel.objects.select_related("provider").order_by("public_id")
        field: ModelChoiceField[Any] | None = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if isinstance(field, ModelChoiceField):
            field.label_from_instance = _chain_step_label  # type: ignore[method-assign,assignment]
        return field


def _chain_step_label(model: LanguageModel) -> str:
    return model.public_id if model.is_usable else f"{model.public_id} (disabled)"


class StrategyFilter(admin.SimpleListFilter):
    """The registry's strategies (Route.strategy has no choices of its own: routing/models.py)."""

    title = "strategy"
    parameter_name = "strategy"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return STRATEGY_CHOICES

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(strategy=self.value()) if self.value() else queryset


@admin.register(Route)
class RouteAdmin(SortableAdminBase, admin.ModelAdmin[Route]):
    form = RouteAdminForm
    inlines = [RouteStepInline]
    list_display = ("name", "short_description", "strategy", "chain", "enabled", "soft_landing", "cache_enabled")
    list_filter = ("enabled", StrategyFilter, "soft_landing", "cache_enabled")
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "updated_at", "escalation_rate", "router_model")
    fieldsets = (
        (None, {"fields": ("name", "description", "enabled", "soft_landing")}),
        ("Strategy", {"fields": ("strategy", "settings", "escalation_rate", "router_model")}),
        ("Default parameters", {"fields": ("temperature", "max_tokens", "system_prompt")}),
        ("Retries", {"fields": ("retry_attempts", "retry_base_delay_seconds")}),
        ("Response cache", {"fields": ("cache_enabled", "cache_ttl_seconds", "cache_max_temperature")}),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        return selectors.routes_with_chains()

    @admin.display(description="description")
    def short_description(self, obj: Route) -> str:
        return Truncator(obj.description).chars(80)

    @admin.display(description="escalations")
    def escalation_rate(self, obj: Route) -> str:
        if obj.pk is None:
            return "—"
        seen = route_escalations(route=obj.name)
        if not seen.calls:
            return f"No calls in the last {ESCALATION_WINDOW_DAYS} days."
        return (
            f"{seen.rate:.1%} of the last {seen.calls:,} calls ({seen.escalated:,}) were escalated by a cascade's "
            f"check (within {ESCALATION_WINDOW_DAYS} days)."
        )

    @admin.display(description="learned model")
    def router_model(self, obj: Route) -> str:
        if obj.pk is None or obj.strategy != "learned":
            return "— (only a route whose strategy is learned has one)"
        newest = RouterModel.objects.filter(route=obj).first()
        what = "No model trained yet."
        if newest is not None:
            when = f"{newest.trained_at:%Y-%m-%d %H:%M} UTC"
            what = f"v{newest.version}, trained {when} from {newest.sources}; {newest.metrics}"
        failure = selectors.learned_training_failure(route=obj, newest=newest)
        # A submit button of the change form: change_view starts the training instead of saving.
        button = format_html(
            '{} <button type="submit" name="_retrain" value="1" class="button">Retrain now</button>', what
        )
        if failure is None:
            return button
        still = f"v{newest.version} still routes its calls." if newest is not None else "No model routes its calls."
        return format_html(
            '<p class="errornote">The last training failed at {} UTC: {} {}</p>{}',
            f"{failure.failed_at:%Y-%m-%d %H:%M:%S}",
            failure.reason,
            still,
            button,
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "POST" and "_retrain" in request.POST and self.has_change_permission(request):
            route = self.get_object(request, object_id)
            if route is not None:
                services.router_model_retrain(route=route)
                messages.success(
                    request,
                    f"Training of {route.name}'s model has started; its next version routes calls once it is done.",
                )
            return HttpResponseRedirect(request.path)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="fallback chain")
    def chain(self, obj: Route) -> str:
        return " → ".join(model.public_id for model in selectors.route_chain_for(route=obj)) or "(empty)"


@admin.register(CascadeOutcome)
class CascadeOutcomeAdmin(admin.ModelAdmin[CascadeOutcome]):
    """What learning cascades kept: read and deleted here, never written (the worker writes them)."""

    list_display = ("created_at", "route", "escalated", "answered_by", "short_prompt")
    list_filter = ("route",)
    search_fields = ("prompt",)
    date_hierarchy = "created_at"
    readonly_fields = ("created_at", "route", "tiers", "prompt", "escalated_from", "answered_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CascadeOutcome | None = None) -> bool:
        return False

    @admin.display(description="escalated from")
    def escalated(self, obj: CascadeOutcome) -> str:
        return " → ".join(obj.escalated_from) or "—"

    @admin.display(description="prompt")
    def short_prompt(self, obj: CascadeOutcome) -> str:
        return Truncator(obj.prompt).chars(80)


@admin.register(GradedSet)
class GradedSetAdmin(admin.ModelAdmin[GradedSet]):
    """Graded CSVs a learned route trains on: uploaded (checked on the way in) and deleted, never edited."""

    form = GradedSetAdminForm
    list_display = ("name", "route", "weak_column", "strong_column", "prompts", "uploaded_at")
    list_filter = ("route",)

    def has_change_permission(self, request: HttpRequest, obj: GradedSet | None = None) -> bool:
        return obj is None and super().has_change_permission(request)


@admin.register(RouterModel)
class RouterModelAdmin(admin.ModelAdmin[RouterModel]):
    """Trained versions of learned routes' models: written by the training task, read and deleted here."""

    list_display = ("route", "version", "trained_at", "sources", "metrics")
    list_filter = ("route",)
    exclude = ("weights",)
    readonly_fields = ("route", "version", "trained_at", "sources", "metrics")
    actions = ["retrain"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retrain the selected models' routes")
    def retrain(self, request: HttpRequest, queryset: QuerySet[RouterModel]) -> None:
        routes = {model.route for model in queryset.select_related("route")}
        for route in routes:
            services.router_model_retrain(route=route)
        messages.success(request, f"Training started for {', '.join(sorted(r.name for r in routes))}.")
