"""Side-by-side runs in the browser, their panels, and blind votes."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Category(models.TextChoices):
    CODING = "coding", "Coding"
    WRITING = "writing", "Writing"
    REASONING = "reasoning", "Reasoning"
    QUICK = "quick", "Quick questions"


class PlaygroundRun(models.Model):
    """One prompt sent to two to six models or routes at once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="playground_runs")
    team = models.ForeignKey(
        "billing.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="playground_runs"
    )
    prompt = models.TextField()
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    blind = models.BooleanField(default=False)
    category = models.CharField(max_length=20, choices=Category.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prompt[:40]} ({self.created_at:%Y-%m-%d %H:%M})"


class RunPanel(models.Model):
    """One column of a run: one model or route, one call."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "Done"
        ERROR = "error", "Failed"
        CANCELLED = "cancelled", "Stopped"

    run = models.ForeignKey(PlaygroundRun, on_delete=models.CASCADE, related_name="panels")
    position = models.PositiveSmallIntegerField(help_text="Column order as shown (shuffled when blind).")
    label = models.CharField(max_length=20, help_text="Model A, Model B, … in blind runs.")
    requested = models.CharField(max_length=200, help_text="The model id or route name that was chosen.")
    call_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    # Filled by the worker when the call ends (see playground/signals.py).
    model = models.CharField(max_length=200, blank=True, help_text="The model that answered.")
    route_reason = models.CharField(
        max_length=500, blank=True, help_text="Why the route's strategy chose its models, in one line."
    )
    output = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.JSONField(default=list, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="one_panel_per_position")]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.position} {self.requested}"


class Vote(models.Model):
    """The one vote of a blind run: a best panel, a tie, or all bad."""

    class Outcome(models.TextChoices):
        BEST = "best", "One is best"
        TIE = "tie", "Tie"
        ALL_BAD = "all_bad", "All bad"

    run = models.OneToOneField(PlaygroundRun, on_delete=models.CASCADE, related_name="vote")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="playground_votes")
    team = models.ForeignKey("billing.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="votes")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    winner = models.ForeignKey(RunPanel, on_delete=models.CASCADE, null=True, blank=True, related_name="wins")
    category = models.CharField(max_length=20, choices=Category.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"vote on {self.run_id}: {self.outcome}"
