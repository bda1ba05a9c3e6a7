"""Admin forms and inline formsets of the registry.

They only translate between HTML and routing/services.py: every rule they
enforce is a service function, so the admin refuses what the services refuse.
"""

from __future__ import annotations

from typing import Any

from adminsortable2.admin import CustomInlineFormSet
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.models import BaseInlineFormSet

from routing import services
from routing.learned.graded import GradedDataError, graded_rows
from routing.models import (
    Capability,
    GradedSet,
    LanguageModel,
    ModelPrice,
    Provider,
    Route,
    RouteStep,
)
from routing.strategies.registry import CHOICES as STRATEGY_CHOICES
from routing.strategies.registry import EXAMPLES


def https_by_default(db_field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    """Form fields of `db_field`; a URL typed without a scheme means https (Django 6's default)."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ProviderAdminForm(forms.ModelForm[Provider]):
    """A provider, with a write-only API key: the stored key is never sent to the browser."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted and never shown again. Leave empty to keep the stored key.",
    )
    clear_api_key = forms.BooleanField(
        label="Clear stored key",
        required=False,
        help_text="Remove the stored key; the environment variable (if any) is used instead.",
    )

    class Meta:
        model = Provider
        formfield_callback = https_by_default
        fields = [
            "name",
            "display_name",
            "kind",
            "base_url",
            "enabled",
            "keeps_no_data",
            "api_key_env",
            "timeout_seconds",
            "connect_timeout_seconds",
            "options",
            "circuit_failures",
            "circuit_window_seconds",
            "circuit_cooldown_seconds",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # a model form's clean() returns its cleaned_data
        if "kind" in cleaned:
            try:
                services.provider_config_validate(kind=cleaned["kind"], base_url=cleaned.get("base_url") or "")
            except ValidationError as exc:
                self.add_error(None, exc)
        if cleaned.get("api_key") and cleaned.get("clear_api_key"):
            self.add_error("clear_api_key", "Either enter a new key or clear the stored one, not both.")
        return cleaned


class LanguageModelAdminForm(forms.ModelForm[LanguageModel]):
    capabilities = forms.MultipleChoiceField(
        choices=Capability.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = LanguageModel
        fields = [
            "public_id",
            "provider",
            "upstream_name",
            "display_name",
            "enabled",
            "context_window",
            "max_output_tokens",
            "capabilities",
            "options",
        ]

    def clean_capabilities(self) -> list[str]:
        chosen = set(self.cleaned_data["capabilities"])
        # The declaration order, so that the stored list never depends on the browser.
        return [tag for tag in Capability.values if tag in chosen]


class ModelPriceAdminForm(forms.ModelForm[ModelPrice]):
    class Meta:
        model = ModelPrice
        fields = [
            "model",
            "valid_from",
            "input_per_million",
            "output_per_million",
            "cached_input_per_million",
            "cache_write_per_million",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # a model form's clean() returns its cleaned_data
        if cleaned.get("model") and cleaned.get("valid_from"):
            try:
                services.model_price_validate_start(model=cleaned["model"], valid_from=cleaned["valid_from"])
            except ValidationError as exc:
                self.add_error(None, exc)
        return cleaned


class ModelPriceInlineFormSet(BaseInlineFormSet[ModelPrice, LanguageModel, forms.ModelForm[ModelPrice]]):
    """Prices of one model: existing rows are history; a new row goes through model_price_set."""

    def clean(self) -> None:
        super().clean()
        for form in self.extra_forms:
            if not form.has_changed() or "valid_from" not in form.cleaned_data:
                continue
            try:
                services.model_price_validate_start(model=self.instance, valid_from=form.cleaned_data["valid_from"])
            except ValidationError as exc:
                form.add_error(None, exc)

    def save_new(self, form: forms.ModelForm[ModelPrice], commit: bool = True) -> ModelPrice:
        # The service both checks the rule again (under a row lock) and saves,
        # so there is nothing to defer when commit is False.
        return services.model_price_set(
            model=self.instance,
            input_per_million=form.cleaned_data["input_per_million"],
            output_per_million=form.cleaned_data["output_per_million"],
            cached_input_per_million=form.cleaned_data["cached_input_per_million"],
            cache_write_per_million=form.cleaned_data["cache_write_per_million"],
            valid_from=form.cleaned_data["valid_from"],
        )


class RouteAdminForm(forms.ModelForm[Route]):
    strategy = forms.ChoiceField(
        choices=STRATEGY_CHOICES,
        help_text="How the route chooses among its models for each call; its settings are described in the README.",
    )

    class Meta:
        model = Route
        fields = [
            "name",
            "description",
            "enabled",
            "strategy",
            "settings",
            "soft_landing",
            "temperature",
            "max_tokens",
            "system_prompt",
            "retry_attempts",
            "retry_base_delay_seconds",
            "cache_enabled",
            "cache_ttl_seconds",
            "cache_max_temperature",
        ]
        help_texts = {
            "settings": f"The strategy's settings as JSON (the README describes each). For example: {EXAMPLES}."
        }
        widgets = {
            "temperature": forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "2"}),
            "cache_max_temperature": forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "2"}),
            "settings": forms.Textarea(attrs={"rows": 8, "cols": 80, "spellcheck": "false"}),
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # a model form's clean() returns its cleaned_data
        try:
            services.route_defaults_validate(
                temperature=cleaned.get("temperature"),
                max_tokens=cleaned.get("max_tokens"),
                system_prompt=cleaned.get("system_prompt") or "",
            )
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned


class RouteStepFormSet(CustomInlineFormSet):
    """A route's chain, sortable; refused as a whole (at the top of the inline) when invalid."""

    def chain_forms(self) -> list[forms.ModelForm[RouteStep]]:
        """The forms that make up the chain after this save, first to last."""
        kept: list[tuple[int, int, forms.ModelForm[RouteStep]]] = []
        for index, form in enumerate(self.forms):
            if form.instance.pk is None and not form.has_changed():
                continue
            if self.can_delete and self._should_delete_form(form):
                continue
            kept.append((form.cleaned_data.get("position") or 0, index, form))
        # Rows without a position (new, not yet dragged) go last, in page order.
        return [form for position, index, form in sorted(kept, key=lambda t: (t[0] <= 0, t[0], t[1]))]

    def clean(self) -> None:
        if any(form.errors for form in self.forms):
            return
        models = [form.cleaned_data["model"] for form in self.chain_forms()]
        services.route_chain_validate(models=models, max_tokens=self.instance.max_tokens)
        super().clean()

    def save_existing_objects(self, commit: bool = True) -> list[RouteStep]:
        if commit:
            # A swap (step 1: a→b, step 2: b→a) would hit the one-model-per-route
            # constraint halfway through. Removing the steps that change model or
            # go away first frees their models; the changed ones are then saved
            # again under their own ids (an UPDATE of a missing row becomes an
            # INSERT), so every intermediate state holds distinct models.
            freed = [
                form.instance.pk
                for form in self.initial_forms
                if (self.can_delete and self._should_delete_form(form)) or "model" in form.changed_data
            ]
            RouteStep.objects.filter(pk__in=freed).delete()
        saved: list[RouteStep] = super().save_existing_objects(commit)
        return saved


class GradedSetAdminForm(forms.ModelForm[GradedSet]):
    """An uploaded graded CSV, read and checked before it is kept (routing/learned/graded.py)."""

    csv_file = forms.FileField(
        label="graded CSV",
        help_text="A `prompt` column and one True/False column per model (the shape of shared/routing-eval/).",
    )

    class Meta:
        model = GradedSet
        fields = ["route", "name", "weak_column", "strong_column"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload = cleaned.get("csv_file")
        if upload is None or not cleaned.get("weak_column") or not cleaned.get("strong_column"):
            return cleaned
        try:
            text = upload.read().decode("utf-8-sig")
            rows = graded_rows(text, weak=cleaned["weak_column"], strong=cleaned["strong_column"], source="The CSV")
        except UnicodeDecodeError:
            raise forms.ValidationError({"csv_file": "The file is not UTF-8 text."}) from None
        except GradedDataError as exc:
            raise forms.ValidationError({"csv_file": str(exc)}) from None
        if not rows:
            raise forms.ValidationError({"csv_file": "The CSV holds no graded prompt."})
        self.instance.csv_text = text
        self.instance.prompts = len(rows)
        return cleaned
