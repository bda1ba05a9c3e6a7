"""Small graded CSVs of the routing-eval shape, for the learned strategy's tests."""

from __future__ import annotations

import csv
import io
import random

WEAK = "weak-model"
STRONG = "strong-model"

_HARD = ["integral", "eigenvalue", "theorem", "derivative", "lemma", "topology"]
_EASY = ["capital", "colour", "author", "river", "planet", "festival"]


def graded_csv(count: int, seed: int) -> str:
    """`count` prompts: those on hard words mostly need the strong model, the others not (a tenth flipped)."""
    draw = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["prompt", WEAK, STRONG])
    for i in range(count):
        hard = draw.random() < 0.4
        word = draw.choice(_HARD if hard else _EASY)
        needs = hard != (draw.random() < 0.1)
        prompt = f"Question {i}: what about the {word} number {draw.randint(1, 10**6)}?"
        writer.writerow([prompt, not needs, True])
    return out.getvalue()
