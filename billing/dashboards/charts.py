"""The dashboards' plotly figures, as HTML fragments (plotly.js itself is loaded once by the page)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from billing.dashboards.selectors import Series, Share

if TYPE_CHECKING:
    from billing.money.replay import DayCompared

# Mid-tone greys and a qualitative palette that read on both the light and the dark theme.
PALETTE = ("#14b8a6", "#6366f1", "#f59e0b", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16", "#ec4899", "#94a3b8")
GRID = "rgba(128,128,128,0.2)"
AXIS_TEXT = "#7b8594"


def figure_html(figure: go.Figure, *, height: int) -> str:
    """The figure as a div and its drawing script, themed like every chart of the site."""
    figure.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 10, "b": 40},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"color": AXIS_TEXT},
        colorway=PALETTE,
        legend={"orientation": "h", "y": -0.18},
        hoverlabel={"namelength": -1},
    )
    figure.update_xaxes(gridcolor=GRID, zeroline=False, automargin=True)
    figure.update_yaxes(gridcolor=GRID, zeroline=False, automargin=True)
    # Plotly's own random div id, not a fixed one: htmx settles a swapped-in element that keeps its id by
    # restoring its server-sent attributes, which would strip the classes plotly.js adds while drawing.
    html: str = figure.to_html(
        full_html=False, include_plotlyjs=False, config={"displayModeBar": False, "responsive": True}
    )
    return html


def colour_of(label: str) -> str:
    """The same colour for a label on every chart and every page, whatever the order of the series."""
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def over_time_chart(series: Series, *, metric: str) -> str:
    """Stacked bars per bucket: spend in USD or tokens."""
    unit = "$%{y:,.4f}" if metric == "spend" else "%{y:,.0f} tokens"
    figure = go.Figure(
        [
            go.Bar(
                x=series.buckets,
                y=line,
                name=label,
                marker={"color": colour_of(label)},
                hovertemplate=f"<b>{label}</b><br>%{{x}}<br>{unit}<extra></extra>",
            )
            for label, line in series.values.items()
        ]
    )
    # A legend even for one series: it says what the bars are.
    figure.update_layout(barmode="stack", bargap=0.15, showlegend=True)
    figure.update_yaxes(tickprefix="$" if metric == "spend" else "", rangemode="tozero")
    return figure_html(figure, height=340)


def spend_by_chart(shares: list[Share]) -> str:
    """Horizontal bars of spend, the most expensive at the top."""
    ordered = list(reversed(shares))
    figure = go.Figure(
        go.Bar(
            x=[float(share.cost) for share in ordered],
            y=[share.label for share in ordered],
            orientation="h",
            marker={"color": PALETTE[0]},
            customdata=[[share.requests, share.tokens] for share in ordered],
            hovertemplate=(
                "<b>%{y}</b><br>$%{x:,.4f}<br>%{customdata[0]:,} calls, %{customdata[1]:,} tokens<extra></extra>"
            ),
        )
    )
    figure.update_xaxes(tickprefix="$", rangemode="tozero")
    return figure_html(figure, height=80 + 28 * max(len(shares), 1))


def compared_chart(days: Sequence[DayCompared], *, real: str, replayed: str) -> str:
    """Per day, side by side: what the calls cost, and what they would have cost replayed (billing/money/)."""
    x = [day.day for day in days]
    figure = go.Figure(
        [
            go.Bar(
                x=x,
                y=[float(day.real) for day in days],
                name=real,
                marker={"color": PALETTE[0]},
                hovertemplate=f"<b>{real}</b><br>%{{x|%Y-%m-%d}}<br>$%{{y:,.4f}}<extra></extra>",
            ),
            go.Bar(
                x=x,
                y=[float(day.replayed) for day in days],
                name=replayed,
                marker={"color": PALETTE[1]},
                hovertemplate=f"<b>{replayed}</b><br>%{{x|%Y-%m-%d}}<br>$%{{y:,.4f}}<extra></extra>",
            ),
        ]
    )
    figure.update_layout(barmode="group", bargap=0.2, showlegend=True)
    figure.update_yaxes(tickprefix="$", rangemode="tozero")
    return figure_html(figure, height=320)
