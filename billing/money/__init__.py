"""Money: exact integer units for counters, the cost of a call's tokens, and dollars as pages show them."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

# UsageRecord.cost_usd has 10 decimal places: counters count in those units, so that sums stay exact.
UNITS_PER_USD = 10**10
COST_PLACES = Decimal("0.0000000001")
CENT = Decimal("0.01")
MILLION = Decimal(1_000_000)


def to_units(amount: Decimal) -> int:
    """USD as an integer count of 10^-10 USD; exact for any cost_usd (10 decimal places)."""
    return int(amount.scaleb(10))


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-10)


def usage_cost(
    *,
    input_tokens: int,
    output_tokens: int,
    input_per_million: Decimal,
    output_per_million: Decimal,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    cached_input_per_million: Decimal | None = None,
    cache_write_per_million: Decimal | None = None,
) -> Decimal:
    """The cost of a call's tokens in USD, to 10 decimal places.

    Cached input and cache writes are parts of `input_tokens`, each at its
    own price per million (the input price when None); reasoning tokens
    are output tokens like any other.
    """
    fresh_input = input_tokens - cached_input_tokens - cache_write_tokens
    cached_price = input_per_million if cached_input_per_million is None else cached_input_per_million
    write_price = input_per_million if cache_write_per_million is None else cache_write_per_million
    cost = (
        Decimal(fresh_input) * input_per_million
        + Decimal(cached_input_tokens) * cached_price
        + Decimal(cache_write_tokens) * write_price
        + Decimal(output_tokens) * output_per_million
    ) / MILLION
    return cost.quantize(COST_PLACES)


def format_usd(amount: Decimal | None, *, rounded: bool = False) -> str:
    """Dollars as people read them; "–" for an amount that is not known (a model with no price).

    Exact (the default) shows every digit the amount has, at least cents:
    `2.5` → "$2.50", `0.075` → "$0.075", `0.0000088500` → "$0.00000885".
    Rounded shows cents from $1, four places from a cent and three
    significant digits below: `0.00014751` → "$0.000147". It rounds down,
    so that a spend shown next to its limit never looks reached before it is.
    """
    if amount is None:
        return "–"
    if rounded:
        if amount == 0 or abs(amount) >= 1:
            places = 2
        elif abs(amount) >= CENT:
            places = 4
        else:
            places = 2 - amount.adjusted()
        amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    places = max(2, -int(amount.normalize().as_tuple().exponent))
    return f"${amount:,.{places}f}"
