"""Model ratings from blind votes: Bradley–Terry scores with bootstrap intervals.

From votes to comparisons
-------------------------
A vote is read as a Ballot: the models whose answers finished (status ok) in
the order shown, and the index of the one judged best, or None for "tie" and
"all bad". Failed or stopped columns gave no answer to judge and take no part.
A model is the one that answered (RunPanel.model): for a route, the model the
route actually used, so routes rank the models behind them.

- "best": the winner beats every other model of the run (k answers give k−1
  comparisons).
- "tie": every pair of models ties (k(k−1)/2 comparisons).
- "all bad": every pair ties too, at full weight. The vote says nothing about
  which answer was better, which is what a tie says; that every answer was
  bad is an absolute judgement, and a pairwise model has no way to express it.
  Any lower weight would be a guess with no data behind it.

Two answers from the same model in one run are never compared with each other.
A ballot with fewer than two distinct models yields no comparison and is not
counted at all.

The fit
-------
Bradley–Terry: P(i beats j) = p_i / (p_i + p_j). A tie counts as half a win
each way. For stability every model also plays PRIOR_GAMES virtual games,
half won and half lost, against a fixed reference of strength 1: a model that
never won stays finite, a model seen once stays near the middle, and the
scale has a fixed origin. Strengths maximise that likelihood (a posterior
mode, strictly concave in log-strength), found by Newton's method with a line
search (see _fit for why not Hunter's MM). Scores are on an Elo-like scale,
BASE_SCORE + 400·log10(p): 1000 is the reference, and a 400-point gap means
10:1 odds of winning.

The interval is the wider of two 95% intervals, so that it is honest with
few votes as with many:
- a percentile bootstrap over votes (not comparisons, since the comparisons
  of one vote are not independent): BOOTSTRAP_SAMPLES resamples drawn with a
  seeded generator, so one set of votes always gives one answer. It follows
  the data's own spread, but a few votes resample into nearly the same
  votes: one vote alone gives an interval of zero width;
- the posterior's normal approximation at the fitted strengths (Laplace):
  score ± 1.96 standard errors of the model's strength against the mean of
  all models, from the inverse of the log-posterior's curvature. It never
  shrinks below what the prior games and the votes seen can tell, however
  few they are, and narrows as 1/√votes.

W/T/L count votes: in a "best" vote the winner's model gets a win and every
other model a loss; in a tie or "all bad" every model gets a tie.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from django.core.cache import cache
from django.db.models import Count, Max, QuerySet

from playground.models import RunPanel, Vote

BASE_SCORE = 1000.0
SCALE = 400.0
PRIOR_GAMES = 1.0
BOOTSTRAP_SAMPLES = 200
SEED = 20240917
CACHE_SECONDS = 24 * 3600
CONFIDENCE = 0.95
_MAX_ITERATIONS = 100
_MAX_HALVINGS = 60
# In natural-log units of strength: 4 is about 700 score points.
_MAX_STEP = 4.0
_SMALLEST_PIVOT = 1e-12
# Stop when no log-strength moves by more than this: under 1e-3 score points.
_TOLERANCE = 1e-6


class Ballot(NamedTuple):
    """One vote as plain data: the models that answered, and the index of the best one (None: no winner)."""

    models: tuple[str, ...]
    winner: int | None


class Comparison(NamedTuple):
    """One pairwise result: `result` is 1.0 when `a` beat `b`, 0.5 for a tie."""

    a: str
    b: str
    result: float


@dataclass(frozen=True)
class Ranking:
    model: str
    score: float
    ci_low: float
    ci_high: float
    votes: int
    wins: int
    ties: int
    losses: int


def ballot_comparisons(ballot: Ballot) -> list[Comparison]:
    """The pairwise comparisons one vote stands for (see the module docstring)."""
    models = ballot.models
    if ballot.winner is not None:
        best = models[ballot.winner]
        return [Comparison(best, other, 1.0) for other in dict.fromkeys(models) if other != best]
    distinct = list(dict.fromkeys(models))
    return [Comparison(a, b, 0.5) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]


# One comparison with its models and their pair as indexes: (pair, a, b, result).
_Indexed = tuple[int, int, int, float]


def _tally(
    indexed: Sequence[list[_Indexed]], weights: Iterable[tuple[int, int]], *, models: int, pairs: int
) -> tuple[list[float], list[float]]:
    """The sufficient statistics of the fit: games won by each model (a tie is half) and games played by each pair.

    `weights` says how many times each ballot counts: once each for the data
    itself, its multiplicity in a bootstrap resample.
    """
    won = [0.0] * models
    games = [0.0] * pairs
    for ballot, weight in weights:
        for pair, a, b, result in indexed[ballot]:
            games[pair] += weight
            won[a] += weight * result
            won[b] += weight * (1.0 - result)
    return won, games


def _fit(
    won: Sequence[float],
    games: Sequence[float],
    pairs: Sequence[tuple[int, int]],
    *,
    prior: float,
    start: Sequence[float] | None = None,
) -> list[float]:
    """Log-strengths (natural log) that maximise the Bradley–Terry likelihood plus the prior games.

    `games[k]` is the number of games played by the models `pairs[k]`.
    Newton's method with a backtracking line search on the log-posterior,
    which the prior makes strictly concave: a handful of steps from any start.
    (Hunter's MM update, the classic choice, improves each strength from its
    own games alone: it crawls, then stops short, when groups of models are
    linked only by a few one-sided games, where the Newton step moves the
    groups as a whole.)
    """
    theta = list(start) if start is not None else [0.0] * len(won)
    value = _log_posterior(theta, won, games, pairs, prior=prior)
    for _ in range(_MAX_ITERATIONS):
        slope = [w + prior / 2 - prior * _logistic(t) for w, t in zip(won, theta, strict=True)]
        for (a, b), played in zip(pairs, games, strict=True):
            share = _logistic(theta[a] - theta[b])
            slope[a] -= played * share
            slope[b] -= played * (1.0 - share)
        step = _solve(_curvature(theta, games, pairs, prior=prior), slope)
        largest = max(abs(d) for d in step)
        if largest < _TOLERANCE:
            break
        # Far from the optimum the curvature fades and Newton's step can be absurd: cap its largest move.
        length = min(1.0, _MAX_STEP / largest)
        for _ in range(_MAX_HALVINGS):
            trial = [t + length * d for t, d in zip(theta, step, strict=True)]
            trial_value = _log_posterior(trial, won, games, pairs, prior=prior)
            if trial_value >= value:
                break
            length /= 2
        else:
            # No step uphill is left to find: rounding has the last word.
            break
        theta, value = trial, trial_value
    return theta


def _curvature(
    theta: Sequence[float], games: Sequence[float], pairs: Sequence[tuple[int, int]], *, prior: float
) -> list[list[float]]:
    """Minus the Hessian of the log-posterior at `theta`: positive definite, thanks to the prior games."""
    curvature = [[0.0] * len(theta) for _ in theta]
    for i, t in enumerate(theta):
        share = _logistic(t)
        curvature[i][i] = prior * share * (1.0 - share)
    for (a, b), played in zip(pairs, games, strict=True):
        share = _logistic(theta[a] - theta[b])
        bend = played * share * (1.0 - share)
        curvature[a][a] += bend
        curvature[b][b] += bend
        curvature[a][b] -= bend
        curvature[b][a] -= bend
    return curvature


def _standard_errors(curvature: Sequence[Sequence[float]]) -> list[float]:
    """Each model's posterior standard deviation against the field's mean (the curvature's inverse is the covariance).

    Against the mean, not the reference: the prior games pin the scale's
    origin only loosely, and that looseness is shared by every model, so it
    says nothing about how models compare.
    """
    size = len(curvature)
    covariance = [_solve(curvature, [1.0 if j == i else 0.0 for j in range(size)]) for i in range(size)]
    row_means = [sum(row) / size for row in covariance]
    grand_mean = sum(row_means) / size
    return [math.sqrt(max(covariance[i][i] - 2 * row_means[i] + grand_mean, 0.0)) for i in range(size)]


def _log_posterior(
    theta: Sequence[float],
    won: Sequence[float],
    games: Sequence[float],
    pairs: Sequence[tuple[int, int]],
    *,
    prior: float,
) -> float:
    """Log-likelihood of the games plus the prior games, up to a constant.

    A game between a and b costs log(e^θa + e^θb) = θb + softplus(θa − θb);
    a prior game against the reference (θ = 0) costs softplus(θ).
    """
    total = sum((w + prior / 2) * t - prior * _softplus(t) for w, t in zip(won, theta, strict=True))
    for (a, b), played in zip(pairs, games, strict=True):
        total -= played * (theta[b] + _softplus(theta[a] - theta[b]))
    return total


def _solve(matrix: Sequence[Sequence[float]], vector: Sequence[float]) -> list[float]:
    """x such that matrix·x = vector, for a symmetric positive-definite matrix (Cholesky)."""
    size = len(vector)
    lower = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1):
            total = matrix[i][j] - sum(lower[i][k] * lower[j][k] for k in range(j))
            # Rounding can eat a tiny pivot. Any positive-definite stand-in still gives an uphill step,
            # which is all the line search needs.
            lower[i][j] = math.sqrt(max(total, _SMALLEST_PIVOT)) if i == j else total / lower[j][j]
    forward: list[float] = []
    for i in range(size):
        forward.append((vector[i] - sum(lower[i][k] * forward[k] for k in range(i))) / lower[i][i])
    solution = [0.0] * size
    for i in reversed(range(size)):
        solution[i] = (forward[i] - sum(lower[k][i] * solution[k] for k in range(i + 1, size))) / lower[i][i]
    return solution


def _logistic(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softplus(x: float) -> float:
    """log(1 + e^x), without overflow."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _score(log_strength: float) -> float:
    return BASE_SCORE + SCALE * log_strength / math.log(10)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The value at `fraction` of a sorted sequence, interpolating linearly between neighbours."""
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rank(
    ballots: Iterable[Ballot],
    *,
    prior: float = PRIOR_GAMES,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> list[Ranking]:
    """Every model that took part in a comparison, best first, with its score and 95% interval.

    Deterministic: the same ballots in the same order give the same rankings.
    `prior` must be positive (it keeps every strength finite).
    """
    if prior <= 0:
        raise ValueError("prior must be positive")
    per_ballot = [comparisons for comparisons in map(ballot_comparisons, ballots) if comparisons]
    if not per_ballot:
        return []
    models = sorted({name for comparisons in per_ballot for c in comparisons for name in (c.a, c.b)})
    index = {model: i for i, model in enumerate(models)}
    pair_of: dict[tuple[int, int], int] = {}
    indexed: list[list[_Indexed]] = []
    for comparisons in per_ballot:
        row = []
        for c in comparisons:
            a, b = index[c.a], index[c.b]
            row.append((pair_of.setdefault((min(a, b), max(a, b)), len(pair_of)), a, b, c.result))
        indexed.append(row)
    pairs = list(pair_of)
    size = {"models": len(models), "pairs": len(pair_of)}

    won, games = _tally(indexed, ((i, 1) for i in range(len(indexed))), **size)
    fitted = _fit(won, games, pairs, prior=prior)
    errors = _standard_errors(_curvature(fitted, games, pairs, prior=prior))

    rng = random.Random(seed)
    resampled_scores: list[list[float]] = [[] for _ in models]
    for _ in range(samples):
        drawn = Counter(rng.choices(range(len(indexed)), k=len(indexed)))
        won, games = _tally(indexed, drawn.items(), **size)
        # Starting from the full-data fit makes each resample converge in far fewer steps.
        for i, log_strength in enumerate(_fit(won, games, pairs, prior=prior, start=fitted)):
            resampled_scores[i].append(_score(log_strength))

    record = _record(per_ballot)
    tail = (1.0 - CONFIDENCE) / 2
    z = statistics.NormalDist().inv_cdf(1.0 - tail)
    rankings = []
    for i, model in enumerate(models):
        score = _score(fitted[i])
        ordered = sorted(resampled_scores[i]) or [score]
        half_width = z * SCALE * errors[i] / math.log(10)
        wins, ties, losses = record[model]
        rankings.append(
            Ranking(
                model=model,
                score=score,
                ci_low=min(_percentile(ordered, tail), score - half_width),
                ci_high=max(_percentile(ordered, 1.0 - tail), score + half_width),
                votes=wins + ties + losses,
                wins=wins,
                ties=ties,
                losses=losses,
            )
        )
    return sorted(rankings, key=lambda r: (-r.score, r.model))


def _record(per_ballot: Iterable[list[Comparison]]) -> dict[str, tuple[int, int, int]]:
    """Votes won, tied and lost by each model."""
    wins: dict[str, int] = {}
    ties: dict[str, int] = {}
    losses: dict[str, int] = {}
    for comparisons in per_ballot:
        if comparisons[0].result == 1.0:
            wins[comparisons[0].a] = wins.get(comparisons[0].a, 0) + 1
            for c in comparisons:
                losses[c.b] = losses.get(c.b, 0) + 1
        else:
            for model in dict.fromkeys(name for c in comparisons for name in (c.a, c.b)):
                ties[model] = ties.get(model, 0) + 1
    models = wins.keys() | ties.keys() | losses.keys()
    return {m: (wins.get(m, 0), ties.get(m, 0), losses.get(m, 0)) for m in models}


# Selectors: the ORM side, for the leaderboard page and for routing.


def votes_for(*, team_id: int | None, user_id: int | None, category: str | None) -> QuerySet[Vote]:
    votes = Vote.objects.all()
    if team_id is not None:
        votes = votes.filter(team_id=team_id)
    elif user_id is not None:
        votes = votes.filter(team__isnull=True, user_id=user_id)
    else:
        raise ValueError("a team or a user is required")
    return votes.filter(category=category) if category else votes


def ballots_for(*, team_id: int | None, user_id: int | None = None, category: str | None = None) -> list[Ballot]:
    """The ballots of a team's votes, or, with team_id None, of the user's own votes made outside any team.

    Oldest first, so the bootstrap sees a stable order. Raises ValueError when
    neither a team nor a user is given: teamless votes of everyone are never mixed.
    """
    votes = votes_for(team_id=team_id, user_id=user_id, category=category)
    return [_ballot(vote) for vote in votes.order_by("created_at", "pk").prefetch_related("run__panels")]


def _ballot(vote: Vote) -> Ballot:
    answered = [panel for panel in vote.run.panels.all() if panel.status == RunPanel.Status.OK and panel.model]
    winner = next((i for i, panel in enumerate(answered) if panel.pk == vote.winner_id), None)
    if vote.outcome == Vote.Outcome.BEST and winner is None:
        # The winner is gone (deleted in the admin): reading the vote as a tie would invent a result.
        return Ballot((), None)
    return Ballot(tuple(panel.model for panel in answered), winner)


def leaderboard_for(*, team_id: int | None, user_id: int | None = None, category: str | None = None) -> list[Ranking]:
    """The models ranked by votes, best first: of a team, or of one user's teamless votes (see ballots_for).

    With a category, only votes in that category count. The result is cached
    under the state of those votes (how many, the newest), so it is computed
    again only after a vote is added or removed.
    """
    votes = votes_for(team_id=team_id, user_id=user_id, category=category)
    state = votes.aggregate(count=Count("pk"), last_pk=Max("pk"), last_at=Max("created_at"))
    if not state["count"]:
        return []
    scope = f"team:{team_id}" if team_id is not None else f"user:{user_id}"
    last_at = state["last_at"].isoformat()
    key = f"playground:leaderboard:{scope}:{category or 'all'}:{state['count']}:{state['last_pk']}:{last_at}"
    rankings: list[Ranking] | None = cache.get(key)
    if rankings is None:
        rankings = rank(ballots_for(team_id=team_id, user_id=user_id, category=category))
        cache.set(key, rankings, timeout=CACHE_SECONDS)
    return rankings
