"""Billing's periodic task. It only calls billing/caps/reconcile.py."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="billing.reconcile_spend", ignore_result=True)
def reconcile_spend_task() -> None:
    """Release lapsed reservations and correct spend counters that drifted from the database (every minute)."""
    from billing.caps.reconcile import spend_reconcile

    spend_reconcile()
