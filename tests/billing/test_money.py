"""The cost of a call's tokens (billing/money/__init__.py usage_cost)."""

from __future__ import annotations

from decimal import Decimal

from billing.money import usage_cost

# Claude Sonnet 4's list prices per million tokens: input, output, cache reads, cache writes (5 minutes).
SONNET = {
    "input_per_million": Decimal("3"),
    "output_per_million": Decimal("15"),
    "cached_input_per_million": Decimal("0.30"),
    "cache_write_per_million": Decimal("3.75"),
}


def test_cached_input_and_cache_writes_are_parts_of_the_input_each_at_its_own_price() -> None:
    cost = usage_cost(
        input_tokens=5_497, output_tokens=65, cached_input_tokens=4_096, cache_write_tokens=1_024, **SONNET
    )

    # 377 fresh input tokens at $3, 4,096 read at $0.30, 1,024 written at $3.75, 65 out at $15.
    assert cost == Decimal("0.0071748000")
    assert cost == (377 * Decimal("3") + 4_096 * Decimal("0.30") + 1_024 * Decimal("3.75") + 65 * 15) / 10**6


def test_a_cache_price_left_out_is_the_input_price() -> None:
    plain = usage_cost(
        input_tokens=5_497, output_tokens=65, input_per_million=Decimal("3"), output_per_million=Decimal("15")
    )

    assert plain == Decimal("0.0174660000")
    assert (
        usage_cost(
            input_tokens=5_497,
            output_tokens=65,
            cached_input_tokens=4_096,
            cache_write_tokens=1_024,
            input_per_million=Decimal("3"),
            output_per_million=Decimal("15"),
        )
        == plain
    )


def test_a_cost_is_kept_to_10_decimal_places() -> None:
    cost = usage_cost(
        input_tokens=3,
        output_tokens=0,
        cached_input_tokens=1,
        input_per_million=Decimal("0.15"),
        output_per_million=Decimal("0.60"),
        cached_input_per_million=Decimal("0.075"),
    )

    # 2 × 0.15 + 1 × 0.075 = 0.375 millionths of a dollar: 3.75 × 10^-7, to the 10^-10.
    assert cost == Decimal("0.0000003750")
    assert cost.as_tuple().exponent == -10
