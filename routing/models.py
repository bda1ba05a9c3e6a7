"""The registry: providers, the models they offer, dated prices, and routes."""

from __future__ import annotations

import os
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from routing import secrets as secret_box
from routing.strategies.base import SettingsError
from routing.strategies.registry import UnknownStrategy, settings_checked


class Capability(models.TextChoices):
    CODE = "code", "Code"
    VISION = "vision", "Vision"
    JSON = "json", "JSON output"
    TOOLS = "tools", "Tool calling"
    LONG_CONTEXT = "long-context", "Long context"
    MULTILINGUAL = "multilingual", "Multilingual"
    # Takes OpenAI's reasoning_effort (o-series, gpt-5, …); other models refuse it, so they do not get it.
    REASONING = "reasoning", "Reasoning effort"


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic Messages"
        GEMINI = "gemini", "Google Gemini"
        OLLAMA = "ollama", "Ollama"
        SIMULATED = "simulated", "Simulated (offline)"

    name = models.SlugField(
        max_length=50,
        unique=True,
        help_text="Short name; it prefixes the public id of each of its models (name/model).",
    )
    display_name = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField(blank=True, help_text="API root, e.g. https://api.openai.com/v1")
    api_key_env = models.CharField(
        "API key environment variable",
        max_length=100,
        blank=True,
        help_text="Name of the environment variable that holds the key (e.g. OPENAI_API_KEY).",
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    timeout_seconds = models.FloatField(
        default=60.0,
        validators=[MinValueValidator(0.1)],
        help_text="Longest wait for the first byte and between two chunks of a stream.",
    )
    connect_timeout_seconds = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)])
    options = models.JSONField(default=dict, blank=True, help_text="Adapter options (extra headers, …).")
    circuit_failures = models.PositiveSmallIntegerField(
        "failures that open a circuit",
        default=3,
        validators=[MinValueValidator(1)],
        help_text="Retryable failures (429, 5xx, overloaded, timeouts, streams cut short) within the window "
        "that open a model's circuit: it is skipped by every route and worker until its cooldown ends.",
    )
    circuit_window_seconds = models.FloatField(
        "failure window (seconds)",
        default=60.0,
        validators=[MinValueValidator(0.1)],
        help_text="How far back failures count towards opening a circuit.",
    )
    circuit_cooldown_seconds = models.FloatField(
        "circuit cooldown (seconds)",
        default=30.0,
        validators=[MinValueValidator(0.1)],
        help_text="How long an open circuit stays open (longer when the provider's retry-after says so); "
        "then one probe call decides whether it closes or opens again.",
    )
    enabled = models.BooleanField(default=True)
    keeps_no_data = models.BooleanField(
        "keeps no data",
        default=False,
        help_text="The provider keeps no prompts or answers (zero data retention, by contract). Requests with "
        "personal data, or tagged sensitive, go through a route only to such providers and to local ones "
        "(Ollama, the simulator).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name

    @property
    def has_stored_key(self) -> bool:
        return bool(self.api_key_encrypted)

    def set_api_key(self, plain: str) -> None:
        self.api_key_encrypted = secret_box.encrypt(plain) if plain else ""

    def api_key(self) -> str:
        """The key to send upstream: the stored one, else the environment variable's."""
        if self.api_key_encrypted:
            return secret_box.decrypt(self.api_key_encrypted)
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        return ""

    def key_status(self) -> str:
        if self.api_key_encrypted:
            return "stored (encrypted)"
        if self.api_key_env:
            return f"${self.api_key_env} " + ("set" if os.environ.get(self.api_key_env) else "not set")
        return "none"


class LanguageModel(models.Model):
    public_id = models.CharField(
        max_length=200,
        unique=True,
        help_text="What clients send as `model`: provider/model, e.g. openai/gpt-4o.",
    )
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    upstream_name = models.CharField(max_length=200, help_text="The model name the provider expects.")
    display_name = models.CharField(max_length=200, blank=True)
    context_window = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_output_tokens = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    capabilities = models.JSONField(default=list, blank=True, help_text="Capability tags.")
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Adapter options; for simulated models: speed, latency and failure modes.",
    )
    free = models.BooleanField(
        default=False,
        help_text="Costs nothing to call (a local model such as Ollama's): booked at $0 and callable by "
        "capped users, teams and keys without a price. A model that is neither free nor priced is refused "
        "to a caller with a spend cap.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["public_id"]
        verbose_name = "model"

    def __str__(self) -> str:
        return self.public_id

    def clean(self) -> None:
        unknown = set(self.capabilities or []) - set(Capability.values)
        if unknown:
            raise ValidationError({"capabilities": f"Unknown capability tags: {', '.join(sorted(unknown))}."})
        if self.provider_id and self.public_id:
            prefix = f"{self.provider.name}/"
            if not self.public_id.startswith(prefix) or self.public_id == prefix:
                raise ValidationError({"public_id": f"Must start with the provider name: {prefix}<model>."})
        if self.context_window and self.max_output_tokens and self.max_output_tokens > self.context_window:
            raise ValidationError({"max_output_tokens": "Cannot exceed the context window."})

    @property
    def is_usable(self) -> bool:
        return self.enabled and self.provider.enabled


class ModelPrice(models.Model):
    """One row of the dated price book. Rows are never edited: a new price is a new row."""

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="prices")
    valid_from = models.DateTimeField(default=timezone.now, db_index=True)
    input_per_million = models.DecimalField(
        "input USD / 1M tokens", max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    output_per_million = models.DecimalField(
        "output USD / 1M tokens", max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    cached_input_per_million = models.DecimalField(
        "cached input USD / 1M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Input tokens read from the provider's prompt cache. Blank: billed at the input price.",
    )
    cache_write_per_million = models.DecimalField(
        "cache write USD / 1M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Input tokens written to the provider's prompt cache (Anthropic bills them above the input "
        "price). Blank: billed at the input price.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [models.UniqueConstraint(fields=["model", "valid_from"], name="one_price_per_moment")]

    def __str__(self) -> str:
        return (
            f"{self.model}: ${self.input_per_million} in / ${self.output_per_million} out"
            f" from {self.valid_from:%Y-%m-%d %H:%M}"
        )


class Route(models.Model):
    name = models.SlugField(
        max_length=50,
        unique=True,
        help_text="What clients send as `model` to let Switchyard choose (auto, coding, cheap, …).",
    )
    description = models.TextField(blank=True)
    # No choices here: the admin's form offers routing.strategies.registry's, and clean() refuses any other,
    # so that a new strategy needs no migration.
    strategy = models.CharField(
        max_length=20,
        default="fixed",
        help_text="How the route chooses among its models for each call (routing/strategies/).",
    )
    settings = models.JSONField(
        "strategy settings",
        default=dict,
        blank=True,
        help_text="The strategy's settings as JSON; each strategy's are described in the README.",
    )
    temperature = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0)])
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    system_prompt = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    soft_landing = models.BooleanField(
        "soft landing",
        default=False,
        help_text="When a caller's spend cap has too little left to hold a call's worst case on every model of "
        "this route, leave out the models it cannot carry (the call is answered by a cheaper one, and says so) "
        "instead of refusing the call.",
    )
    retry_attempts = models.PositiveSmallIntegerField(
        "retries per model",
        default=0,
        validators=[MaxValueValidator(5)],
        help_text="How many times a model that failed before its first token (rate limited, overloaded, timed "
        "out, unavailable) is tried again before the call moves down the chain; 0: never.",
    )
    retry_base_delay_seconds = models.FloatField(
        "retry base delay (seconds)",
        default=0.5,
        validators=[MinValueValidator(0.0)],
        help_text="Retry n waits a random time up to this × 2^(n-1) (and at least the provider's retry-after), "
        "always within the call's deadline.",
    )
    cache_enabled = models.BooleanField(
        "response cache",
        default=False,
        help_text="Answer a request identical to an earlier one (same caller's team, messages and parameters) "
        "from the cache instead of asking a model again. Off: only requests that ask for it are cached.",
    )
    cache_ttl_seconds = models.PositiveIntegerField(
        "cache TTL (seconds)",
        default=3600,
        validators=[MinValueValidator(1), MaxValueValidator(30 * 24 * 3600)],
        help_text="How long a cached answer is served.",
    )
    cache_max_temperature = models.FloatField(
        "cache up to temperature",
        null=True,
        blank=True,
        default=1.0,
        validators=[MinValueValidator(0.0)],
        help_text="Requests sampled above this temperature (1 when not given) skip the cache unless they ask "
        "for it; empty: any temperature is cached.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        names = frozenset(LanguageModel.objects.values_list("public_id", flat=True)) | frozenset(
            Route.objects.values_list("name", flat=True)
        )
        try:
            self.settings = settings_checked(self.strategy, self.settings, names)
        except UnknownStrategy as exc:
            raise ValidationError({"strategy": str(exc)}) from None
        except SettingsError as exc:
            raise ValidationError({"settings": str(exc)}) from None


class RouteStep(models.Model):
    """One model in a route's ordered fallback chain."""

    position = models.PositiveIntegerField(default=0, db_index=True)
    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="steps")
    model = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="route_steps")

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["route", "model"], name="model_once_per_route")]

    def __str__(self) -> str:
        return f"{self.route} #{self.position}: {self.model}"


class CascadeOutcome(models.Model):
    """What a cascade route's checks said of one call's answers, kept when the route learns from them.

    Only routes whose settings say `"learn": true` keep these, and never for
    a prompt in which personal data was found: the prompt is kept (its head),
    because a learned route trains on prompt text (routing/learned/training.py).
    """

    created_at = models.DateTimeField(db_index=True)
    route = models.CharField(max_length=50)
    # The route's tiers, cheapest first, as the call ran them.
    tiers = models.JSONField(default=list)
    prompt = models.TextField()
    # The tiers whose answers failed a check, in order, and the one whose answer was sent.
    escalated_from = models.JSONField(default=list)
    answered_by = models.CharField(max_length=200)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.route}: {' → '.join([*self.escalated_from, self.answered_by])}"


class GradedSet(models.Model):
    """Graded prompts uploaded for a learned route: a CSV of the routing-eval shape (routing/learned/graded.py)."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="graded_sets")
    name = models.CharField(max_length=200)
    weak_column = models.CharField(max_length=200, help_text="The column that grades the weak tier's answers.")
    strong_column = models.CharField(max_length=200, help_text="The column that grades the strong tier's answers.")
    csv_text = models.TextField(editable=False)
    prompts = models.PositiveIntegerField(default=0, editable=False)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded_at"]
        verbose_name = "graded data set"

    def __str__(self) -> str:
        return f"{self.route}: {self.name} ({self.prompts} prompts)"


class RouterModel(models.Model):
    """One trained version of a learned route's model (routing/learned/router.py); the newest routes its calls."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="router_models")
    version = models.PositiveIntegerField()
    trained_at = models.DateTimeField()
    # How many graded prompts each source gave: uploaded sets, arena votes, cascade outcomes.
    sources = models.JSONField(default=dict)
    # routing_eval's figures on a held-out part of the prompts, and the calibrated threshold.
    metrics = models.JSONField(default=dict)
    # LearnedRouter.to_bytes(): JSON and raw arrays, never a pickle.
    weights = models.BinaryField()

    class Meta:
        ordering = ["route", "-version"]
        constraints = [models.UniqueConstraint(fields=["route", "version"], name="one_router_model_per_version")]

    def __str__(self) -> str:
        return f"{self.route} v{self.version}"


class RouterTrainingFailure(models.Model):
    """A training of a learned route's model that failed: when and why, for the route's admin page.

    The route's newest trained version keeps routing its calls; a later training
    that succeeds makes this one history.
    """

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="router_training_failures")
    failed_at = models.DateTimeField()
    reason = models.TextField()

    class Meta:
        ordering = ["route", "-failed_at"]

    def __str__(self) -> str:
        return f"{self.route}: failed at {self.failed_at:%Y-%m-%d %H:%M} UTC"
