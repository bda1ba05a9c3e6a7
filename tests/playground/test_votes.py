from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from billing.models import Team, TeamMembership
from playground.models import PlaygroundRun, RunPanel, Vote
from playground.votes import VoteError, panel_reveal, vote_cast

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def cast() -> dict[str, Any]:
    """alice and bob share team red; charlie is in team blue."""
    red, blue = Team.objects.create(name="Red", slug="red"), Team.objects.create(name="Blue", slug="blue")
    users = {name: User.objects.create_user(username=name) for name in ("alice", "bob", "charlie")}
    TeamMembership.objects.create(team=red, user=users["alice"])
    TeamMembership.objects.create(team=red, user=users["bob"])
    TeamMembership.objects.create(team=blue, user=users["charlie"])
    return {**users, "red": red, "blue": blue}


def blind_run(user: Any, team: Team | None, answers: list[tuple[str, str]], **fields: Any) -> PlaygroundRun:
    """A run whose panels answered with these (model, status) pairs, labelled Model A, B, …"""
    fields = {"prompt": "Hello?", "blind": True, **fields}
    run = PlaygroundRun.objects.create(user=user, team=team, **fields)
    for position, (model, status) in enumerate(answers):
        RunPanel.objects.create(
            run=run,
            position=position,
            label=f"Model {chr(65 + position)}",
            requested=model,
            model=model if status == "ok" else "",
            status=status,
            call_id=uuid.uuid4().hex,
        )
    return run


def finished(user: Any, team: Team | None, **fields: Any) -> PlaygroundRun:
    return blind_run(user, team, [("sim/alpha", "ok"), ("sim/beta", "ok"), ("sim/gamma", "ok")], **fields)


def test_it_records_a_best_vote_with_the_runs_team_and_category(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"], category="writing")
    winner = run.panels.get(position=1)

    vote = vote_cast(run=run, user=cast["alice"], outcome="best", winner_panel=winner)

    assert (vote.outcome, vote.winner, vote.team, vote.category, vote.user) == (
        "best",
        winner,
        cast["red"],
        "writing",
        cast["alice"],
    )


def test_it_takes_the_category_from_the_classifier_when_the_run_has_none(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"], prompt="Write a function that parses ISO dates in Python")

    vote = vote_cast(run=run, user=cast["alice"], outcome="tie")

    assert vote.category == "coding"
    assert vote.winner is None


def test_it_records_all_bad_without_a_winner(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], None)

    vote = vote_cast(run=run, user=cast["alice"], outcome="all_bad")

    assert (vote.outcome, vote.winner, vote.team) == ("all_bad", None, None)


def test_it_refuses_a_vote_on_a_run_that_was_not_blind(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"], blind=False)

    with pytest.raises(VoteError, match="Only blind runs"):
        vote_cast(run=run, user=cast["alice"], outcome="tie")
    assert not Vote.objects.exists()


def test_it_refuses_a_vote_while_an_answer_is_still_running(cast: dict[str, Any]) -> None:
    run = blind_run(cast["alice"], cast["red"], [("sim/alpha", "ok"), ("sim/beta", "running")])

    with pytest.raises(VoteError, match="Wait until every answer has finished"):
        vote_cast(run=run, user=cast["alice"], outcome="tie")


def test_it_accepts_a_vote_once_the_other_answers_failed_or_stopped(cast: dict[str, Any]) -> None:
    run = blind_run(cast["alice"], cast["red"], [("sim/alpha", "ok"), ("sim/beta", "error"), ("sim/c", "cancelled")])

    vote = vote_cast(run=run, user=cast["alice"], outcome="best", winner_panel=run.panels.get(position=0))

    assert vote.winner.model == "sim/alpha"


def test_it_refuses_a_failed_answer_as_the_best(cast: dict[str, Any]) -> None:
    run = blind_run(cast["alice"], cast["red"], [("sim/alpha", "ok"), ("sim/beta", "error")])

    with pytest.raises(VoteError, match="Model B has no answer to judge: it failed"):
        vote_cast(run=run, user=cast["alice"], outcome="best", winner_panel=run.panels.get(position=1))


def test_it_refuses_a_second_vote_on_the_same_run(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])
    vote_cast(run=run, user=cast["alice"], outcome="tie")

    with pytest.raises(VoteError, match="already has a vote"):
        vote_cast(run=run, user=cast["alice"], outcome="best", winner_panel=run.panels.first())
    assert Vote.objects.get().outcome == "tie"


def test_it_refuses_a_vote_by_anyone_but_the_runs_owner(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])

    with pytest.raises(VoteError, match="Only the person who made this run"):
        vote_cast(run=run, user=cast["bob"], outcome="tie")


def test_it_requires_a_winner_for_a_best_vote(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])

    with pytest.raises(VoteError, match="Say which answer is best"):
        vote_cast(run=run, user=cast["alice"], outcome="best")


def test_it_refuses_a_winner_from_another_run(cast: dict[str, Any]) -> None:
    run, other = finished(cast["alice"], cast["red"]), finished(cast["alice"], cast["red"])

    with pytest.raises(VoteError, match="must be one of this run's answers"):
        vote_cast(run=run, user=cast["alice"], outcome="best", winner_panel=other.panels.first())


def test_it_refuses_an_unknown_outcome(cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])

    with pytest.raises(VoteError, match="Choose one answer as best"):
        vote_cast(run=run, user=cast["alice"], outcome="meh")


def test_it_reveals_names_of_an_open_run_at_once_and_of_a_blind_run_only_after_the_vote(cast: dict[str, Any]) -> None:
    open_run, blind = finished(cast["alice"], None, blind=False), finished(cast["alice"], None)

    before = panel_reveal(blind)
    vote_cast(run=blind, user=cast["alice"], outcome="tie")

    assert panel_reveal(open_run) is True
    assert before is False
    assert panel_reveal(blind) is True


# The endpoint


def login(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def vote_url(run: PlaygroundRun) -> str:
    return f"/playground/runs/{run.pk}/vote/"


def test_the_vote_box_hides_the_model_names_until_the_vote(client: Client, cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])

    html = login(client, cast["alice"]).get(vote_url(run)).content.decode()

    for testid in ("vote-best-A", "vote-best-B", "vote-best-C", "vote-tie", "vote-all-bad"):
        assert f'data-testid="{testid}"' in html
    assert "Model A is best" in html
    assert "sim/alpha" not in html and "sim/beta" not in html and "revealed-" not in html


def test_a_vote_posted_with_htmx_answers_with_the_revealed_names(client: Client, cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])

    response = login(client, cast["alice"]).post(vote_url(run), {"choice": "best-2"}, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert response["HX-Trigger"] == "vote-cast"
    assert "You picked <strong>Model C</strong> as the best answer" in html
    for letter, model in (("A", "sim/alpha"), ("B", "sim/beta"), ("C", "sim/gamma")):
        revealed = html.split(f'data-testid="revealed-{letter}"', 1)[1].split("</li>", 1)[0]
        assert f"<code>{model}</code>" in revealed
    assert "vote-best-A" not in html
    assert Vote.objects.get(run=run).winner.model == "sim/gamma"


def test_a_tie_and_all_bad_are_recorded_from_their_buttons(client: Client, cast: dict[str, Any]) -> None:
    tie, bad = finished(cast["alice"], cast["red"]), finished(cast["alice"], cast["red"])
    login(client, cast["alice"])

    client.post(vote_url(tie), {"choice": "tie"})
    client.post(vote_url(bad), {"choice": "all_bad"})

    assert Vote.objects.get(run=tie).outcome == "tie"
    assert Vote.objects.get(run=bad).outcome == "all_bad"


def test_a_second_vote_is_refused_with_a_message_and_status_400(client: Client, cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])
    login(client, cast["alice"]).post(vote_url(run), {"choice": "tie"})

    response = client.post(vote_url(run), {"choice": "best-0"}, headers={"HX-Request": "true"})

    assert response.status_code == 400
    assert "already has a vote" in response.content.decode()
    assert Vote.objects.get(run=run).outcome == "tie"


def test_a_vote_before_the_answers_are_in_is_refused_in_the_box(client: Client, cast: dict[str, Any]) -> None:
    run = blind_run(cast["alice"], cast["red"], [("sim/alpha", "running"), ("sim/beta", "ok")])

    response = login(client, cast["alice"]).post(vote_url(run), {"choice": "tie"}, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 400
    assert 'data-testid="vote-error"' in html and "Wait until every answer has finished" in html
    assert 'data-testid="vote-tie"' in html
    assert "sim/alpha" not in html


@pytest.mark.parametrize("choice", ["", "best-", "best-x", "best-9", "winner"])
def test_a_malformed_or_unknown_choice_is_refused(client: Client, cast: dict[str, Any], choice: str) -> None:
    run = finished(cast["alice"], cast["red"])

    response = login(client, cast["alice"]).post(vote_url(run), {"choice": choice})

    assert response.status_code == 400
    assert 'data-testid="vote-error"' in response.content.decode()
    assert not Vote.objects.exists()


@pytest.mark.parametrize("voter", ["bob", "charlie"])
def test_another_users_run_is_a_404_even_for_a_teammate(client: Client, cast: dict[str, Any], voter: str) -> None:
    run = finished(cast["alice"], cast["red"])
    login(client, cast[voter])

    assert client.get(vote_url(run)).status_code == 404
    assert client.post(vote_url(run), {"choice": "tie"}).status_code == 404
    assert not Vote.objects.exists()


def test_an_unknown_run_is_a_404(client: Client, cast: dict[str, Any]) -> None:
    response = login(client, cast["alice"]).post(f"/playground/runs/{uuid.uuid4()}/vote/", {"choice": "tie"})

    assert response.status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(client: Client, cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"])

    response = client.post(vote_url(run), {"choice": "tie"})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not Vote.objects.exists()


def test_the_vote_box_of_a_run_that_was_not_blind_is_empty(client: Client, cast: dict[str, Any]) -> None:
    run = finished(cast["alice"], cast["red"], blind=False)

    response = login(client, cast["alice"]).get(vote_url(run))

    assert response.status_code == 200
    assert response.content.decode().strip() == ""
