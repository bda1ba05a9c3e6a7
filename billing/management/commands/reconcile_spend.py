"""`manage.py reconcile_spend`: what Celery beat runs every minute, run now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing.caps.reconcile import spend_reconcile


class Command(BaseCommand):
    help = "Release lapsed spend reservations and correct spend counters that drifted from the usage records."

    def handle(self, *args: Any, **options: Any) -> None:
        done = spend_reconcile()
        self.stdout.write(
            f"{done.counters} counters checked, {done.corrected} corrected; "
            f"{done.reservations_lapsed} lapsed reservations released."
        )
