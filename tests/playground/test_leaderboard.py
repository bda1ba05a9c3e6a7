from __future__ import annotations

import gzip
import math
import random
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli
import httpx
import plotly
import pytest
from django.contrib.auth import get_user_model
from django.templatetags.static import static
from django.test import Client

from billing.models import Team, TeamMembership
from playground.leaderboard import (
    BASE_SCORE,
    Ballot,
    Comparison,
    ballot_comparisons,
    ballots_for,
    leaderboard_for,
    rank,
)
from playground.models import PlaygroundRun, RunPanel, Vote
from playground.votes import vote_cast

User = get_user_model()


def duel(wins: int, losses: int, ties: int = 0) -> list[Ballot]:
    """Votes between two models, "a" and "b", seen from a."""
    return [Ballot(("a", "b"), 0)] * wins + [Ballot(("b", "a"), 0)] * losses + [Ballot(("a", "b"), None)] * ties


def by_model(rankings: list[Any]) -> dict[str, Any]:
    return {r.model: r for r in rankings}


# From votes to comparisons


def test_a_best_vote_is_the_winner_beating_every_other_answer() -> None:
    assert ballot_comparisons(Ballot(("a", "b", "c"), 1)) == [Comparison("b", "a", 1.0), Comparison("b", "c", 1.0)]


def test_a_tie_or_all_bad_vote_is_a_tie_between_every_pair() -> None:
    assert ballot_comparisons(Ballot(("a", "b", "c"), None)) == [
        Comparison("a", "b", 0.5),
        Comparison("a", "c", 0.5),
        Comparison("b", "c", 0.5),
    ]


def test_two_answers_from_the_same_model_are_never_compared_with_each_other() -> None:
    assert ballot_comparisons(Ballot(("a", "b", "a"), 0)) == [Comparison("a", "b", 1.0)]
    assert ballot_comparisons(Ballot(("a", "a"), None)) == []


# The fit


def test_two_models_get_the_closed_form_bradley_terry_gap() -> None:
    wins, losses = 210, 90
    p = wins / (wins + losses)
    expected_gap = 400 * math.log10(p / (1 - p))

    shrunk = by_model(rank(duel(wins, losses)))
    exact = by_model(rank(duel(wins, losses), prior=1e-6))

    assert exact["a"].score - exact["b"].score == pytest.approx(expected_gap, abs=0.05)
    # The default prior (one virtual game against the reference) pulls a little towards the middle.
    assert shrunk["a"].score - shrunk["b"].score == pytest.approx(expected_gap, abs=1.0)
    assert shrunk["a"].score - shrunk["b"].score < expected_gap


def test_ties_count_as_half_a_win_each_way() -> None:
    with_ties = by_model(rank(duel(30, 10, ties=20), prior=1e-6))

    # 30 + 20/2 = 40 wins against 10 + 20/2 = 20.
    assert with_ties["a"].score - with_ties["b"].score == pytest.approx(400 * math.log10(40 / 20), abs=0.05)


def test_a_model_that_never_won_gets_a_finite_score_below_the_winner() -> None:
    rankings = rank(duel(5, 0))

    assert [r.model for r in rankings] == ["a", "b"]
    assert all(math.isfinite(r.score) for r in rankings)
    assert rankings[1].score < BASE_SCORE < rankings[0].score


def test_three_transitive_models_are_ordered_best_first() -> None:
    ballots = (
        [Ballot(("a", "b"), 0)] * 8
        + [Ballot(("a", "b"), 1)] * 2
        + [Ballot(("b", "c"), 0)] * 8
        + [Ballot(("b", "c"), 1)] * 2
        + [Ballot(("a", "c"), 0)] * 9
        + [Ballot(("a", "c"), 1)] * 1
    )

    rankings = rank(ballots)

    assert [r.model for r in rankings] == ["a", "b", "c"]
    assert rankings[0].score > rankings[1].score > rankings[2].score


def test_a_three_way_best_vote_ranks_the_winner_above_both_others() -> None:
    rankings = rank([Ballot(("x", "y", "z"), 2)] * 6 + [Ballot(("x", "y", "z"), 0)] * 2)

    assert [r.model for r in rankings][:2] == ["z", "x"]


def test_ties_are_symmetric() -> None:
    tied = by_model(rank(duel(0, 0, ties=12)))
    mirrored = by_model(rank(duel(7, 3)))
    swapped = by_model(rank([Ballot(("b", "a"), 0)] * 7 + [Ballot(("a", "b"), 0)] * 3))

    assert tied["a"].score == pytest.approx(tied["b"].score, abs=1e-6)
    assert tied["a"].score == pytest.approx(BASE_SCORE, abs=1e-6)
    assert mirrored["a"].score == pytest.approx(swapped["b"].score, abs=1e-6)
    assert mirrored["a"].score - BASE_SCORE == pytest.approx(BASE_SCORE - mirrored["b"].score, abs=1e-6)


def test_it_counts_votes_won_tied_and_lost() -> None:
    ballots = [Ballot(("a", "b", "c"), 0), Ballot(("a", "b", "c"), 1), Ballot(("a", "c"), None)]

    record = {r.model: (r.votes, r.wins, r.ties, r.losses) for r in rank(ballots)}

    assert record == {"a": (3, 1, 1, 1), "b": (2, 1, 0, 1), "c": (3, 0, 1, 2)}


def test_a_ballot_with_a_single_model_counts_for_nothing() -> None:
    assert rank([Ballot(("a",), 0), Ballot(("a", "a"), None), Ballot((), None)]) == []


def test_the_interval_contains_the_estimate_and_narrows_with_more_votes() -> None:
    few = by_model(rank(duel(7, 3)))
    many = by_model(rank(duel(70, 30)))

    for rankings in (few, many):
        for r in rankings.values():
            assert r.ci_low <= r.score <= r.ci_high
            assert r.ci_low < r.ci_high
    assert many["a"].ci_high - many["a"].ci_low < (few["a"].ci_high - few["a"].ci_low) / 2


def test_one_vote_gives_a_wide_interval_that_cannot_separate_the_two_models() -> None:
    winner, loser = rank([Ballot(("a", "b"), 0)])

    assert winner.model == "a" and winner.score > loser.score
    for r in (winner, loser):
        assert r.ci_high - r.ci_low > 300
    assert loser.ci_high > winner.ci_low


def test_the_interval_holds_the_true_standing_about_as_often_as_it_claims() -> None:
    # Two models 100 points apart: each stands 50 points from their mean, which the scale puts at 1000.
    rng = random.Random(7)
    a_wins = 1 / (1 + 10 ** (-100 / 400))
    trials = 60
    held = 0
    for _ in range(trials):
        ballots = [Ballot(("a", "b"), 0 if rng.random() < a_wins else 1) for _ in range(10)]
        a = by_model(rank(ballots, samples=50))["a"]
        held += a.ci_low <= 1050 <= a.ci_high
    assert held / trials >= 0.9


def test_it_is_deterministic() -> None:
    ballots = duel(12, 7, ties=3) + [Ballot(("a", "c", "b"), 1)] * 4

    assert rank(ballots) == rank(ballots)
    # The seed draws the bootstrap's resamples; the estimate itself never depends on it.
    assert [r.score for r in rank(ballots, seed=1)] == [r.score for r in rank(ballots, seed=2)]


def test_it_refuses_a_prior_that_would_let_scores_run_off_to_infinity() -> None:
    with pytest.raises(ValueError, match="prior must be positive"):
        rank(duel(1, 0), prior=0)


# The selectors, over votes in the database


@pytest.fixture
def cast(db: Any) -> dict[str, Any]:
    """alice and bob share team red; charlie is in team blue; dave and erin are in no team."""
    red, blue = Team.objects.create(name="Red", slug="red"), Team.objects.create(name="Blue", slug="blue")
    users = {name: User.objects.create_user(username=name) for name in ("alice", "bob", "charlie", "dave", "erin")}
    TeamMembership.objects.create(team=red, user=users["alice"])
    TeamMembership.objects.create(team=red, user=users["bob"])
    TeamMembership.objects.create(team=blue, user=users["charlie"])
    return {**users, "red": red, "blue": blue}


def voted(
    user: Any,
    team: Team | None,
    answers: list[str | tuple[str, str]],
    outcome: str,
    winner: int | None = None,
    category: str = "",
) -> Vote:
    """A blind run whose panels answered (a model, or (model, status), or ("route:name", model)) and its vote."""
    run = PlaygroundRun.objects.create(user=user, team=team, prompt="Hello?", blind=True, category=category)
    panels = []
    for position, answer in enumerate(answers):
        requested, model, status = answer, answer, "ok"
        if isinstance(answer, tuple):
            first, second = answer
            requested, model, status = (first, second, "ok") if first.startswith("route:") else (first, "", second)
        panels.append(
            RunPanel.objects.create(
                run=run,
                position=position,
                label=f"Model {chr(65 + position)}",
                requested=requested,
                model=model,
                status=status,
                call_id=uuid.uuid4().hex,
            )
        )
    return vote_cast(run=run, user=user, outcome=outcome, winner_panel=panels[winner] if winner is not None else None)


def test_votes_become_ballots_of_the_models_that_answered(cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/a", ("sim/b", "error"), "sim/c"], "best", winner=2)
    voted(cast["alice"], cast["red"], [("route:auto", "sim/a"), "sim/b"], "all_bad")

    assert ballots_for(team_id=cast["red"].pk) == [
        Ballot(("sim/a", "sim/c"), 1),
        Ballot(("sim/a", "sim/b"), None),
    ]


def test_a_vote_moves_the_leaderboard(cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/a", "sim/b"], "tie")
    before = by_model(leaderboard_for(team_id=cast["red"].pk))

    voted(cast["bob"], cast["red"], ["sim/a", "sim/b"], "best", winner=1)
    after = by_model(leaderboard_for(team_id=cast["red"].pk))

    assert before["sim/a"].score == pytest.approx(before["sim/b"].score)
    assert after["sim/b"].score > after["sim/a"].score
    assert (after["sim/b"].votes, after["sim/b"].wins, after["sim/b"].ties) == (2, 1, 1)


def test_a_team_never_sees_another_teams_votes(cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/red-1", "sim/red-2"], "best", winner=0)
    voted(cast["charlie"], cast["blue"], ["sim/blue-1", "sim/blue-2"], "best", winner=0)
    voted(cast["dave"], None, ["sim/solo-1", "sim/solo-2"], "tie")

    assert {r.model for r in leaderboard_for(team_id=cast["red"].pk)} == {"sim/red-1", "sim/red-2"}
    assert {r.model for r in leaderboard_for(team_id=cast["blue"].pk)} == {"sim/blue-1", "sim/blue-2"}


def test_a_user_in_no_team_sees_only_their_own_votes(cast: dict[str, Any]) -> None:
    voted(cast["dave"], None, ["sim/dave-1", "sim/dave-2"], "tie")
    voted(cast["erin"], None, ["sim/erin-1", "sim/erin-2"], "tie")
    voted(cast["alice"], cast["red"], ["sim/red-1", "sim/red-2"], "tie")

    assert {r.model for r in leaderboard_for(team_id=None, user_id=cast["dave"].pk)} == {"sim/dave-1", "sim/dave-2"}
    with pytest.raises(ValueError, match="a team or a user is required"):
        leaderboard_for(team_id=None)


def test_a_category_counts_only_its_own_votes(cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/coder", "sim/poet"], "best", winner=0, category="coding")
    voted(cast["alice"], cast["red"], ["sim/coder", "sim/poet"], "best", winner=1, category="writing")
    voted(cast["alice"], cast["red"], ["sim/coder", "sim/poet"], "best", winner=1, category="writing")

    coding = leaderboard_for(team_id=cast["red"].pk, category="coding")
    writing = leaderboard_for(team_id=cast["red"].pk, category="writing")
    overall = leaderboard_for(team_id=cast["red"].pk)

    assert [r.model for r in coding] == ["sim/coder", "sim/poet"]
    assert [r.model for r in writing] == ["sim/poet", "sim/coder"]
    assert {r.model: r.votes for r in overall} == {"sim/coder": 3, "sim/poet": 3}


# The page


def page(client: Client, user: Any, query: str = "", **headers: str) -> str:
    client.force_login(user)
    response = client.get(f"/playground/leaderboard/{query}", headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_draws_a_plotly_chart_with_plotly_js_from_static_files(client: Client, cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/a", "sim/b", "sim/c"], "best", winner=1)

    html = page(client, cast["alice"])

    assert 'id="leaderboard-chart"' in html and 'class="plotly-graph-div"' in html
    assert "Plotly.newPlot" in html
    assert html.count(f'<script src="{static("plotly/plotly.min.js")}"></script>') == 1
    assert "cdn" not in html.lower() and "unpkg" not in html and "jsdelivr" not in html
    assert "<code>sim/b</code>" in html and "<code>sim/c</code>" in html
    table = html.split('data-testid="leaderboard-table"', 1)[1]
    assert table.index("sim/b") < table.index("sim/a")
    assert 'aria-current="page">Leaderboard</a>' in html


PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def test_the_page_links_plotly_js_under_a_name_that_carries_its_content_hash(
    client: Client, cast: dict[str, Any]
) -> None:
    voted(cast["alice"], cast["red"], ["sim/a", "sim/b"], "best", winner=0)

    html = page(client, cast["alice"])

    scripts = re.findall(r'<script src="(/static/plotly/[^"]+)"', html)
    assert len(scripts) == 1
    assert re.fullmatch(r"/static/plotly/plotly\.min\.[0-9a-f]{12}\.js", scripts[0])
    assert "plotly.min.js" not in html


@pytest.mark.parametrize(
    ("encoding", "decompress"),
    [pytest.param("br", brotli.decompress, id="br"), pytest.param("gzip", gzip.decompress, id="gzip")],
)
def test_plotly_js_is_sent_compressed_as_the_client_accepts_and_cached_for_good(
    gateway_url: str, encoding: str, decompress: Callable[[bytes], bytes]
) -> None:
    with httpx.stream(
        "GET", f"{gateway_url}{static('plotly/plotly.min.js')}", headers={"Accept-Encoding": encoding}
    ) as response:
        sent = b"".join(response.iter_raw())

    assert response.status_code == 200
    assert response.headers["content-encoding"] == encoding
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"].startswith("text/javascript")
    # The package's file is 4.8 MB: brotli sends ~1.1 MB of it, gzip ~1.5 MB.
    assert len(sent) < 1_600_000 < PLOTLY_JS.stat().st_size
    assert decompress(sent) == PLOTLY_JS.read_bytes()
    assert "immutable" in response.headers["cache-control"]
    max_age = re.search(r"max-age=(\d+)", response.headers["cache-control"])
    assert max_age is not None and int(max_age.group(1)) >= 365 * 24 * 3600


def test_plotly_js_goes_out_whole_to_a_client_that_accepts_no_compression(gateway_url: str) -> None:
    response = httpx.get(f"{gateway_url}{static('plotly/plotly.min.js')}", headers={"Accept-Encoding": "identity"})

    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == PLOTLY_JS.read_bytes()


def test_the_page_explains_how_to_vote_when_there_are_no_votes(client: Client, cast: dict[str, Any]) -> None:
    html = page(client, cast["alice"])

    assert 'data-testid="leaderboard-empty"' in html
    assert "turn on <strong>Blind</strong>" in html
    assert 'id="leaderboard-chart"' not in html


def test_the_page_shows_only_the_users_team(client: Client, cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/red-1", "sim/red-2"], "best", winner=0)
    voted(cast["charlie"], cast["blue"], ["sim/blue-1", "sim/blue-2"], "best", winner=0)

    bob_sees = page(client, cast["bob"])
    charlie_sees = page(client, cast["charlie"])
    dave_sees = page(client, cast["dave"])

    assert "sim/red-1" in bob_sees and "sim/blue-1" not in bob_sees and "Red" in bob_sees
    assert "sim/blue-1" in charlie_sees and "sim/red-1" not in charlie_sees
    assert "sim/" not in dave_sees and "you are not in a team" in dave_sees


def test_a_category_tab_loaded_with_htmx_gets_only_the_board(client: Client, cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/coder", "sim/poet"], "best", winner=0, category="coding")
    voted(cast["alice"], cast["red"], ["sim/coder", "sim/poet"], "best", winner=1, category="writing")

    writing = page(client, cast["alice"], "?category=writing", HX_Request="true")
    coding_full = page(client, cast["alice"], "?category=coding")

    assert "<html" not in writing and writing.lstrip().startswith('<div id="board"')
    assert 'data-category="writing"' in writing and 'id="leaderboard-chart"' in writing
    assert 'data-testid="tab-writing" aria-current="page"' in writing
    writing_table = writing.split('data-testid="leaderboard-table"', 1)[1]
    assert writing_table.index("sim/poet") < writing_table.index("sim/coder")
    assert 'data-testid="tab-coding" aria-current="page"' in coding_full


def test_an_unknown_category_shows_the_overall_board(client: Client, cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/a", "sim/b"], "tie", category="coding")

    html = page(client, cast["alice"], "?category=gossip")

    assert 'data-category="overall"' in html and "<code>sim/a</code>" in html


def test_an_empty_category_says_so(client: Client, cast: dict[str, Any]) -> None:
    voted(cast["alice"], cast["red"], ["sim/a", "sim/b"], "tie", category="coding")

    html = page(client, cast["alice"], "?category=quick")

    assert "No votes on quick questions prompts yet" in html


def test_the_leaderboard_needs_a_login(client: Client) -> None:
    response = client.get("/playground/leaderboard/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
