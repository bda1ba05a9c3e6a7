"""`{% load money %}`: dollars and rates as the dashboards show them."""

from __future__ import annotations

from decimal import Decimal

from django import template

from billing.money import format_usd

register = template.Library()


@register.filter
def usd(amount: Decimal | None) -> str:
    """Rounded for reading ("$12.35", "$0.0042"), never up; "–" when unknown."""
    return format_usd(amount, rounded=True)


@register.filter
def usd_exact(amount: Decimal | None) -> str:
    """Every digit the amount has, as booked."""
    return format_usd(amount)


@register.filter
def usd_signed(amount: Decimal | None) -> str:
    """A difference, rounded as `usd` is, with its sign: "+$12.35", "−$0.0042"; "–" when unknown."""
    if amount is None:
        return "–"
    return f"{'−' if amount < 0 else '+'}{format_usd(abs(amount), rounded=True)}"


@register.filter
def percent(fraction: float | None) -> str:
    """0.0123 → "1.2%"; "–" when there is nothing to divide."""
    if fraction is None:
        return "–"
    return f"{fraction * 100:.1f}%"
