"""The blind vote endpoint and the team leaderboard page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_http_methods

from billing.selectors import team_of_user
from playground.leaderboard import Ranking, leaderboard_for
from playground.models import Category, PlaygroundRun, Vote
from playground.votes import VoteError, vote_cast

if TYPE_CHECKING:
    from switchyard.request_types import AuthenticatedHttpRequest


VOTE_TEMPLATE = "playground/_vote.html"


class VoteForm(forms.Form):
    """One button press: "best-<position>" for the answer at that position, "tie" or "all_bad"."""

    choice = forms.CharField(max_length=20)

    def clean_choice(self) -> tuple[str, int | None]:
        choice: str = self.cleaned_data["choice"]
        if choice in (Vote.Outcome.TIE, Vote.Outcome.ALL_BAD):
            return choice, None
        position = choice.removeprefix("best-")
        if choice.startswith("best-") and position.isdigit():
            return Vote.Outcome.BEST, int(position)
        raise forms.ValidationError("Choose one answer as best, a tie, or all bad.")


@require_http_methods(["GET", "POST"])
@login_required
def vote(request: AuthenticatedHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """GET: the vote box of a run (to refresh it once the answers are in). POST: cast the vote.

    Answers with the `_vote.html` partial either way; a refused vote comes back
    with status 400 and the reason in the partial. Another user's run is a 404.
    """
    run = get_object_or_404(PlaygroundRun, pk=run_id, user=request.user)
    if request.method == "GET":
        return render(request, VOTE_TEMPLATE, {"run": run})
    form = VoteForm(request.POST)
    try:
        if not form.is_valid():
            raise VoteError(" ".join(str(message) for message in form.errors["choice"]))
        outcome, position = form.cleaned_data["choice"]
        winner = run.panels.filter(position=position).first() if position is not None else None
        if outcome == Vote.Outcome.BEST and winner is None:
            raise VoteError("The best answer must be one of this run's answers.")
        vote_cast(run=run, user=request.user, outcome=outcome, winner_panel=winner)
    except VoteError as exc:
        return render(request, VOTE_TEMPLATE, {"run": run, "vote_error": str(exc)}, status=400)
    response = render(request, VOTE_TEMPLATE, {"run": run})
    # The run page can listen for this to reveal the names in its column headers too.
    response["HX-Trigger"] = "vote-cast"
    return response


@dataclass(frozen=True)
class Tab:
    value: str
    label: str
    active: bool


@dataclass(frozen=True)
class Row:
    rank: int
    ranking: Ranking


def _chart(rankings: list[Ranking]) -> str:
    """Scores with their 95% intervals, best at the top, as a plotly div (plotly.js is loaded by the page)."""
    ordered = list(reversed(rankings))
    figure = go.Figure(
        go.Scatter(
            x=[r.score for r in ordered],
            y=[r.model for r in ordered],
            mode="markers",
            marker={"size": 11, "color": "#14b8a6"},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [r.ci_high - r.score for r in ordered],
                "arrayminus": [r.score - r.ci_low for r in ordered],
                "color": "#7b8594",
                "thickness": 1.5,
            },
            customdata=[[r.ci_low, r.ci_high, r.votes] for r in ordered],
            hovertemplate=(
                "<b>%{y}</b><br>score %{x:.0f}<br>95% CI %{customdata[0]:.0f} to %{customdata[1]:.0f}"
                "<br>%{customdata[2]} votes<extra></extra>"
            ),
        )
    )
    figure.update_layout(
        height=120 + 44 * len(ordered),
        margin={"l": 10, "r": 20, "t": 10, "b": 50},
        # Mid-tone greys and teal read on both the light and the dark theme of the page.
        xaxis={
            "title": {"text": "Score (models start at 1000; +400 = 10:1 odds of winning)"},
            "zeroline": False,
            "gridcolor": "rgba(128,128,128,0.25)",
        },
        yaxis={"automargin": True, "gridcolor": "rgba(128,128,128,0.15)"},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"color": "#7b8594"},
        showlegend=False,
    )
    # Plotly's own random div id, not a fixed one: htmx settles a swapped-in element that keeps its id by
    # restoring its server-sent attributes, which would strip the classes plotly.js adds while drawing.
    html: str = figure.to_html(
        full_html=False, include_plotlyjs=False, config={"displayModeBar": False, "responsive": True}
    )
    return html


@require_GET
@login_required
def leaderboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The leaderboard of the user's team (or of the user's own votes), overall or for one category.

    An htmx request (switching category) gets only the board partial.
    """
    category = request.GET.get("category", "")
    if category not in Category.values:
        category = ""
    team = team_of_user(user_id=request.user.pk)
    rankings = leaderboard_for(team_id=team.pk if team else None, user_id=request.user.pk, category=category or None)
    tabs = [Tab("", "Overall", category == "")] + [
        Tab(value, label, category == value) for value, label in Category.choices
    ]
    context = {
        "team": team,
        "category": category,
        "category_label": Category(category).label if category else "",
        "tabs": tabs,
        "rows": [Row(position, ranking) for position, ranking in enumerate(rankings, start=1)],
        "chart": _chart(rankings) if rankings else "",
    }
    template = "playground/leaderboard.html#board" if request.htmx else "playground/leaderboard.html"
    return render(request, template, context)
