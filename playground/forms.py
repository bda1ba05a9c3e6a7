"""The playground's run form: what it can check before a run starts (spend caps are checked as the run starts)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from playground.models import Category
from playground.selectors import Estimate, chat_request_for, context_window_of, run_estimate
from playground.services import MAX_PANELS, MIN_PANELS, RunRequest
from routing import tokens
from routing.catalog import Catalog

MAX_OUTPUT_TOKENS = 200_000


class SelectionsField(forms.Field):
    """The chosen model ids and route names, in the order given, without repeats."""

    widget = forms.SelectMultiple

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        chosen: list[str] = []
        for item in value:
            item = str(item).strip()
            if item and item not in chosen:
                chosen.append(item)
        return chosen


class RunForm(forms.Form):
    prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 5}))
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    models = SelectionsField(required=False)
    temperature = forms.FloatField(
        required=False,
        min_value=0,
        max_value=2,
        widget=forms.NumberInput(attrs={"step": "0.1", "placeholder": "default"}),
    )
    max_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_OUTPUT_TOKENS,
        label="Max tokens",
        widget=forms.NumberInput(attrs={"placeholder": "model's limit"}),
    )
    blind = forms.BooleanField(required=False)
    category = forms.ChoiceField(required=False, choices=[("", "Automatic")] + list(Category.choices))

    def __init__(self, *args: Any, user_id: int, catalog: Catalog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_id = user_id
        self.catalog = catalog

    def clean_prompt(self) -> str:
        prompt: str = self.cleaned_data["prompt"]
        if not prompt.strip():
            raise forms.ValidationError("Write a prompt first.")
        return prompt

    def clean_models(self) -> list[str]:
        chosen: list[str] = self.cleaned_data["models"]
        if not chosen:
            raise forms.ValidationError(f"Choose {MIN_PANELS} to {MAX_PANELS} models or routes to compare.")
        if len(chosen) < MIN_PANELS:
            raise forms.ValidationError(
                f"Choose at least one more model or route: a run compares {MIN_PANELS} to {MAX_PANELS}."
            )
        if len(chosen) > MAX_PANELS:
            raise forms.ValidationError(f"Choose at most {MAX_PANELS} models or routes (you chose {len(chosen)}).")
        problems = [problem for value in chosen if (problem := self._unavailable(value))]
        if problems:
            raise forms.ValidationError(problems)
        return chosen

    def _unavailable(self, value: str) -> str:
        """Why `value` cannot run now, or "" if it can."""
        model = self.catalog.models.get(value)
        if model is not None:
            return "" if model.usable else f"{value} is disabled: choose another model."
        route = self.catalog.routes.get(value)
        if route is None:
            return f"{value} is not a model or route of this Switchyard."
        if not route.enabled:
            return f"The route {value} is disabled: choose another."
        if context_window_of(self.catalog, value) == 0:
            return f"No model of the route {value} is enabled: choose another."
        return ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # a form's clean() returns its cleaned_data
        prompt, chosen = cleaned.get("prompt"), cleaned.get("models")
        if prompt and chosen:
            request = chat_request_for(prompt=prompt, system_prompt=cleaned.get("system_prompt", ""))
            prompt_tokens = tokens.estimate_request_tokens(request)
            value = min(chosen, key=lambda v: context_window_of(self.catalog, v))
            window = context_window_of(self.catalog, value)
            if prompt_tokens > window:
                self.add_error(
                    "prompt",
                    f"The prompt is about {prompt_tokens:,} tokens, more than {value} can take "
                    f"({window:,} tokens). Shorten it or choose models with a larger context window.",
                )
        return cleaned

    def run_request(self) -> RunRequest:
        data = self.cleaned_data
        return RunRequest(
            prompt=data["prompt"],
            selections=tuple(data["models"]),
            system_prompt=data.get("system_prompt") or "",
            temperature=data.get("temperature"),
            max_tokens=data.get("max_tokens"),
            blind=bool(data.get("blind")),
            category=data.get("category") or "",
        )

    def estimate(self) -> Estimate | None:
        """The cost of what the form holds so far, valid or not; None until a prompt or a model is entered."""
        data = self.data if self.is_bound else self.initial
        getlist = getattr(data, "getlist", None)
        selections = [str(v) for v in (getlist("models") if getlist else data.get("models") or [])]
        prompt = str(data.get("prompt") or "")
        if not prompt.strip() and not selections:
            return None
        max_tokens = str(data.get("max_tokens") or "").strip()
        return run_estimate(
            catalog=self.catalog,
            at=timezone.now(),
            prompt=prompt,
            system_prompt=str(data.get("system_prompt") or ""),
            selections=selections,
            max_tokens=int(max_tokens) if max_tokens.isdigit() and 0 < int(max_tokens) <= MAX_OUTPUT_TOKENS else None,
        )
