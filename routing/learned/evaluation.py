"""How well a router's scores route graded prompts: RouteLLM's APGR, CPT(x%), and the figures at a threshold.

A router gives each prompt a score; prompts scoring at or above a threshold
go to the strong tier. Sweeping the threshold over every distinct score,
from "all weak" to "all strong", gives quality against the share of strong
calls. Prompts with equal scores move together, so the curve between two
thresholds is a straight line: the expected result of breaking the tie at
random. Definitions are those of ../shared/routing-eval/README.md:

- PGR at a point: (quality - quality of all-weak) / (quality of all-strong - quality of all-weak);
- APGR: the area under PGR over the strong share from 0 to 1 (trapezoids);
- CPT(x): the smallest strong share among the sweep's points where PGR reaches x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from routing.learned.graded import Graded


@dataclass(frozen=True, slots=True)
class Point:
    strong_share: float
    quality: float
    pgr: float


@dataclass(frozen=True, slots=True)
class Sweep:
    points: tuple[Point, ...]
    weak_quality: float
    strong_quality: float

    @property
    def apgr(self) -> float:
        area = 0.0
        for left, right in zip(self.points, self.points[1:], strict=False):
            area += (right.strong_share - left.strong_share) * (left.pgr + right.pgr) / 2
        return area

    def cpt(self, pgr: float) -> float | None:
        """The smallest strong share at which PGR reaches `pgr` (0.5 for CPT(50%)); None if never."""
        reached = [p.strong_share for p in self.points if p.pgr >= pgr - 1e-12]
        return min(reached) if reached else None


def sweep(rows: Sequence[Graded], scores: Sequence[float]) -> Sweep:
    """The quality curve of routing `rows` by `scores` (higher: more the strong tier's)."""
    if not rows or len(rows) != len(scores):
        raise ValueError("sweep needs one score per graded prompt, and at least one prompt.")
    n = len(rows)
    weak_right = sum(r.weak_ok for r in rows)
    strong_right = sum(r.strong_ok for r in rows)
    gap = (strong_right - weak_right) / n

    def pgr(quality: float) -> float:
        return (quality - weak_right / n) / gap if gap else 0.0

    order = sorted(range(n), key=lambda i: -scores[i])
    right = weak_right
    points = [Point(0.0, weak_right / n, pgr(weak_right / n))]
    i = 0
    while i < n:
        j = i
        # Every prompt with this score moves up together: one threshold.
        while j < n and scores[order[j]] == scores[order[i]]:
            row = rows[order[j]]
            right += row.strong_ok - row.weak_ok
            j += 1
        points.append(Point(j / n, right / n, pgr(right / n)))
        i = j
    return Sweep(tuple(points), weak_right / n, strong_right / n)


@dataclass(frozen=True, slots=True)
class AtThreshold:
    strong_share: float
    quality: float
    pgr: float


def at_threshold(rows: Sequence[Graded], scores: Sequence[float], threshold: float, gap_of: Sweep) -> AtThreshold:
    """What routing `rows` at one threshold gives: the strong share, the quality and its PGR."""
    strong = [s >= threshold for s in scores]
    right = sum(r.strong_ok if up else r.weak_ok for r, up in zip(rows, strong, strict=True))
    quality = right / len(rows)
    gap = gap_of.strong_quality - gap_of.weak_quality
    return AtThreshold(sum(strong) / len(rows), quality, (quality - gap_of.weak_quality) / gap if gap else 0.0)


def threshold_for_share(scores: Sequence[float], share: float) -> float:
    """The threshold that sends at most `share` of these scores to the strong tier (ties stay below it)."""
    if not scores:
        return 1.0
    ranked = sorted(scores, reverse=True)
    allowed = int(share * len(ranked) + 1e-9)
    if allowed <= 0:
        return float("inf")
    if allowed >= len(ranked):
        return ranked[-1]
    cut = ranked[allowed - 1]
    if ranked[allowed] < cut:
        return cut
    # A tie straddles the cut: raise the threshold above it, so the share stays at most `share`.
    above = [s for s in ranked if s > cut]
    return min(above) if above else float("inf")
