"""Who calls (teams, API keys) and what every call cost (usage records)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from billing.rollups.buckets import LATENCY_COLUMNS, TTFT_COLUMNS
from routing.providers.errors import ErrorKind


class Team(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class ApiKey(models.Model):
    """A bearer key for /v1. Only its SHA-256 is stored; the plain key is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=20, help_text="The visible start of the key, to recognise it.")
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# Outcomes of models a call left out without calling them; a cache hit replays one's earlier answer.
CACHE_HIT = "cache_hit"
NOT_TRIED = frozenset({"skipped", ErrorKind.CIRCUIT_OPEN.value, CACHE_HIT})


def tried_several(attempts: list[dict[str, Any]]) -> bool:
    """Whether a call's attempts tried more than one model (skipped ones were not tried): it fell back."""
    # A model tried again (a route's retries) is still one model.
    return len({attempt.get("model") for attempt in attempts if attempt.get("outcome") not in NOT_TRIED}) > 1


# What a replay reads of a call that is not plain: its team and time, what the filters narrow, what it sums.
UNPLAIN_COVERED = [
    "team",
    "created_at",
    "plain",
    "model",
    "route",
    "user",
    "api_key",
    "needs",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
]


class UsageRecord(models.Model):
    """Exactly one per call, written by the worker that ran it.

    Unit prices are copied from the price book at the moment of the call, so
    a later price edit never rewrites what a call cost. Cached input and
    cache writes are parts of input_tokens, reasoning of output_tokens; the
    cost is (input - cached - cache writes) at the input price, plus cached
    input, cache writes and output at theirs.
    """

    class Status(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled"

    class Source(models.TextChoices):
        API = "api", "API"
        PLAYGROUND = "playground", "Playground"

    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.API)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="usage_records"
    )
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_records")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_records")
    requested = models.CharField(max_length=200, help_text="The model or route the client asked for.")
    route = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Public id of the model that answered.")
    provider = models.CharField(max_length=50, blank=True)
    attempts = models.JSONField(default=list, blank=True)
    fell_back = models.BooleanField(default=False, help_text="More than one model was tried.")
    trace = models.JSONField(default=dict, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0, help_text="Input tokens read from the prompt cache.")
    cache_write_tokens = models.PositiveIntegerField(default=0, help_text="Input tokens written to the prompt cache.")
    reasoning_tokens = models.PositiveIntegerField(default=0, help_text="Output tokens spent reasoning.")
    tokens_estimated = models.BooleanField(default=False)
    needs = models.CharField(
        max_length=40,
        null=True,
        blank=True,
        help_text=(
            "The capability tags the call needed of its model (tools, json, vision), comma-separated; "
            "empty for none, null for calls booked before they were recorded."
        ),
    )
    plain = models.BooleanField(
        default=False,
        help_text=(
            "Any model with PLAIN_CONTEXT tokens of context and PLAIN_OUTPUT of output could have served it: "
            "booked with a price, its needs recorded and none, within those limits."
        ),
    )
    input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # What cached input and cache writes were booked at: the input price when the price book had none for them.
    cached_input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cost_usd = models.DecimalField(
        max_digits=18, decimal_places=10, null=True, blank=True, help_text="Empty when no price was known."
    )
    escalations = models.PositiveSmallIntegerField(
        default=0, help_text="Answers a cascade route held back for failing a check, then asked a dearer model."
    )
    extra_cost_usd = models.DecimalField(
        max_digits=18,
        decimal_places=10,
        default=0,
        help_text="What the call paid beyond its answer (escalated answers, a classifier's call): a part of cost_usd.",
    )
    cache_hit = models.BooleanField(
        default=False, help_text="Answered from Switchyard's response cache: no provider was asked, nothing paid."
    )
    cache_saving_usd = models.DecimalField(
        max_digits=18,
        decimal_places=10,
        null=True,
        blank=True,
        help_text="What a cache hit's answer would have cost from its model at the call's prices; empty otherwise.",
    )
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error_kind = models.CharField(max_length=30, blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["team", "created_at"]),
            # A route's newest calls: its escalation rate on its admin page.
            models.Index(fields=["route", "created_at"]),
            # A team's most expensive calls of a period (its dashboard): read dearest first until ten fall in it.
            models.Index(fields=["team", "-cost_usd"], name="record_team_dearest"),
            # The calls a replay may set apart (billing/money/selectors.py), a small part of a team's calls, with
            # every column its read filters and sums: both databases answer it from the index alone.
            models.Index(fields=UNPLAIN_COVERED, condition=models.Q(plain=False), name="record_team_unplain"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model or self.requested} {self.status}"


# Answered by a model that had no price, so no cost was booked (a failed call has no model).
UNPRICED = models.Q(cost_usd__isnull=True) & ~models.Q(model="")

# The limits under which a call is plain: the smallest of the demo's models (8K context, 2K output) has them,
# and most calls fit them, so a replay on any model at least that large reads only the few calls that are not.
PLAIN_CONTEXT = 8_192
PLAIN_OUTPUT = 2_048


def plain_call(
    *, model: str, cost_usd: Decimal | None, needs: str | None, input_tokens: int, output_tokens: int
) -> bool:
    """Whether a call is plain (UsageRecord.plain): one that no model at least PLAIN_CONTEXT/PLAIN_OUTPUT large
    would set apart in a replay."""
    return (
        not (cost_usd is None and model)
        and needs == ""
        and output_tokens <= PLAIN_OUTPUT
        and input_tokens + output_tokens <= PLAIN_CONTEXT
    )


# What a team's totals and its spend charts read of a rollup, besides its team and hour.
COVERED_SLICE = ("model", "route", "user_id", "api_key_id")
COVERED_SUMS = (
    "requests",
    "errors",
    "fell_back",
    "unpriced",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_hits",
    "cost_units",
    "cache_saving_units",
)


class RollupSums(models.Model):
    """What a rollup sums of its records (billing/rollups/maintain.py SUMS), whatever its slice.

    Cost is in integer units of 10^-10 USD (billing/money/__init__.py): exact sums on
    SQLite too. Latency and time to first token are histograms, one column
    per bucket of billing/rollups/buckets.py, from which percentiles come.
    """

    requests = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    fell_back = models.IntegerField(default=0)
    unpriced = models.IntegerField(default=0, help_text="Calls booked with no known price.")
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost_units = models.BigIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    ttft_count = models.IntegerField(default=0)
    cache_hits = models.IntegerField(default=0, help_text="Calls answered from the response cache.")
    cache_saving_units = models.BigIntegerField(default=0, help_text="What the cache hits saved, in 10^-10 USD.")

    class Meta:
        abstract = True


class UsageRollup(RollupSums):
    """The usage records of one hour, team, user, API key, model and route, summed (billing/rollups/).

    Dashboards read these (or the day rollups, UsageDayRollup) instead of
    the records. An absent team, user or key is 0, so that the unique key
    holds (SQL's NULLs never conflict).
    """

    hour = models.DateTimeField()
    team_id = models.IntegerField(default=0)
    user_id = models.IntegerField(default=0)
    api_key_id = models.IntegerField(default=0)
    model = models.CharField(max_length=200, blank=True)
    route = models.CharField(max_length=50, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "team_id", "user_id", "api_key_id", "model", "route"], name="one_rollup_per_slice"
            )
        ]
        indexes = [
            models.Index(fields=["user_id", "hour"]),
            # Also the index of a team's hours. It covers a team's totals, spend over time and spend by
            # anything: both databases answer those from the index alone, never reading the rows' 50 columns.
            models.Index(
                fields=["team_id", "hour", *COVERED_SLICE, *COVERED_SUMS],
                name="rollup_team_hour_covering",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h team {self.team_id} {self.model or '-'}: {self.requests} calls"


class UsageDayRollup(RollupSums):
    """A team's usage of one UTC day, summed per model and route, and apart per user and API key.

    Every hour rollup counts once in each grain: in its model and route's
    row, and in its user and key's row, so the rows of one grain hold all
    of the team's calls of the day. The other grain's columns stay empty
    ("" or 0): the dashboards filter and group these rows by the hour
    rollups' own column names. A card whose filters and grouping name only
    model and route, or only user and key, reads its whole days here
    (billing/dashboards/sources.py): 90 days of spend by model are 90 rows
    per model and route, where the hour rollups hold one per hour, user,
    key, model and route. (A key has one user, so the user and key grain
    is hardly bigger than the keys alone.)
    """

    class Grain(models.TextChoices):
        MODEL_ROUTE = "model_route", "Model and route"
        USER_KEY = "user_key", "User and API key"

    day = models.DateTimeField(help_text="Midnight UTC.")
    team_id = models.IntegerField(default=0)
    grain = models.CharField(max_length=11, choices=Grain.choices)
    model = models.CharField(max_length=200, blank=True)
    route = models.CharField(max_length=50, blank=True)
    user_id = models.IntegerField(default=0)
    api_key_id = models.IntegerField(default=0)

    class Meta:
        constraints = [
            # Also the index of a card's read: one team, one grain, a run of days.
            models.UniqueConstraint(
                fields=["team_id", "grain", "day", "model", "route", "user_id", "api_key_id"],
                name="one_day_rollup_per_slice",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} team {self.team_id} by {self.grain}: {self.requests} calls"


for _model in (UsageRollup, UsageDayRollup):
    for _column in (*LATENCY_COLUMNS, *TTFT_COLUMNS):
        models.IntegerField(default=0).contribute_to_class(_model, _column)


# A spend cap or a rate limit applies to exactly one of a user, a team, an API key.
ONE_SUBJECT = (
    models.Q(user__isnull=False, team__isnull=True, api_key__isnull=True)
    | models.Q(user__isnull=True, team__isnull=False, api_key__isnull=True)
    | models.Q(user__isnull=True, team__isnull=True, api_key__isnull=False)
)


def subject_label(limited: SpendCap | RateLimit) -> str:
    """Who a cap or a rate limit applies to, in words: "team acme", "API key sy-ab12…", "user alice"."""
    if limited.team is not None:
        return f"team {limited.team.slug}"
    if limited.api_key is not None:
        return f"API key {limited.api_key.prefix}…"
    if limited.user is not None:
        return f"user {limited.user.get_username()}"
    return "nobody"


class SpendCap(models.Model):
    """A spending limit in USD per UTC calendar day or month, on exactly one user, team or API key.

    Spend reaching `limit_usd` blocks further calls of that subject until the
    period ends; reaching `soft_threshold` of it adds a warning to answers.
    The spend itself is kept in Redis counters (billing/caps.py).
    """

    class Period(models.TextChoices):
        DAY = "day", "Daily"
        MONTH = "month", "Monthly"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="spend_caps"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="spend_caps")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="spend_caps")
    limit_usd = models.DecimalField("limit (USD)", max_digits=12, decimal_places=4)
    period = models.CharField(max_length=5, choices=Period.choices, default=Period.MONTH)
    soft_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.8"),
        help_text="Fraction of the limit from which answers carry a warning (0.8 = 80%).",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "spend cap"
        constraints = [
            models.CheckConstraint(
                condition=ONE_SUBJECT,
                name="spend_cap_one_subject",
                violation_error_message="A cap applies to exactly one of: a user, a team, an API key.",
            ),
            models.CheckConstraint(
                condition=models.Q(limit_usd__gte=0),
                name="spend_cap_limit_not_negative",
                violation_error_message="The limit cannot be negative.",
            ),
            models.CheckConstraint(
                condition=models.Q(soft_threshold__gt=0, soft_threshold__lte=1),
                name="spend_cap_soft_threshold_fraction",
                violation_error_message="The soft threshold is a fraction of the limit: above 0, at most 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_period_display()} cap of ${self.limit_usd} on {self.subject_label}"

    @property
    def subject_label(self) -> str:
        return subject_label(self)


class RateLimit(models.Model):
    """Requests and tokens per minute for one user, team or API key, enforced in Redis (billing/ratelimits/).

    A team's limit is the team's total, or, with `per_key`, each of the
    team's API keys' own unless the key has a limit of its own.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="rate_limits"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="rate_limits")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="rate_limits")
    per_key = models.BooleanField(
        "for each of its keys",
        default=False,
        help_text="A team's limit for each of its API keys (a key's own limit overrides it), not the team's total.",
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Counted at admission: the prompt's tokens and the request's max_tokens.",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=ONE_SUBJECT,
                name="rate_limit_one_subject",
                violation_error_message="A rate limit applies to exactly one of: a user, a team, an API key.",
            ),
            models.CheckConstraint(
                condition=models.Q(requests_per_minute__isnull=False) | models.Q(tokens_per_minute__isnull=False),
                name="rate_limit_requests_or_tokens",
                violation_error_message="Give requests per minute, tokens per minute, or both.",
            ),
            models.CheckConstraint(
                condition=models.Q(per_key=False) | models.Q(team__isnull=False),
                name="rate_limit_per_key_on_a_team",
                violation_error_message="'For each of its keys' applies to a team's limit only.",
            ),
        ]

    def __str__(self) -> str:
        parts = []
        if self.requests_per_minute:
            parts.append(f"{self.requests_per_minute} requests")
        if self.tokens_per_minute:
            parts.append(f"{self.tokens_per_minute} tokens")
        return f"{' and '.join(parts)} per minute on {self.subject_label}"

    @property
    def subject_label(self) -> str:
        label = subject_label(self)
        return f"each API key of {label}" if self.per_key else label
