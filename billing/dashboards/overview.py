"""What each card of a team's overview shows, and which cards a viewer gets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from billing.dashboards import charts, selectors
from billing.dashboards.caps import cap_usage
from billing.dashboards.sources import card_rollups

if TYPE_CHECKING:
    from billing.dashboards.access import TeamAccess
    from billing.dashboards.filters import Filters

# The cards of the overview, by the name in their URL; the "member" ones break spend down by person.
CHARTS = ("spend", "tokens", "by-model", "by-route", "by-user", "by-key", "models", "caps", "expensive")
MEMBER_CHARTS = {"by-user", "by-key"}
EXPENSIVE_CALLS = 10


def charts_for(access: TeamAccess) -> list[str]:
    """The cards the viewer may open: all of them, or those that show no other member's spend."""
    return [chart for chart in CHARTS if access.sees_members or chart not in MEMBER_CHARTS]


def chart_figures(access: TeamAccess, filters: Filters, chart: str) -> dict[str, Any]:
    """The figures of one card (one of charts_for(access)), for its template."""
    if chart in ("spend", "tokens"):
        series = selectors.over_time(
            card_rollups(access, filters, grouped_by=filters.stack, bucketed=True),
            since=filters.since,
            until=filters.until,
            bucket=filters.bucket,
            stack=filters.stack,
            metric=chart,
        )
        return {"figure": charts.over_time_chart(series, metric=chart), "empty": not series.values}
    if chart.startswith("by-"):
        dimension = chart.removeprefix("by-")
        shares = selectors.spend_by(card_rollups(access, filters, grouped_by=dimension), dimension)
        return {"figure": charts.spend_by_chart(shares), "shares": shares, "dimension": dimension, "empty": not shares}
    if chart == "models":
        health = selectors.model_health(card_rollups(access, filters, grouped_by="model"))
        return {"health": health, "empty": not health}
    if chart == "caps":
        usage = cap_usage(access)
        return {"caps": usage, "empty": not usage}
    calls = selectors.most_expensive(access.records().filter(filters.record_q()), EXPENSIVE_CALLS)
    return {"calls": calls, "empty": not calls}
