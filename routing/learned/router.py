"""The learned router: from a prompt, how much more likely the strong tier is to answer it well than the weak one.

Two logistic regressions (scikit-learn) on the same features of the prompt:
its hashed word unigrams and bigrams, and what the local scorer reads
(routing/strategies/complexity.py: each category's cues, and the length).
One predicts that the weak tier answers well, the other that the strong
tier does. The score is the difference of the two probabilities: the
expected gain in answers right of sending the prompt up, which is what a
router with a budget of strong calls should rank by. (The difference of
the log-odds, which format 2 models used, scores a prompt the weak tier
likely fails and the strong one may pass, 0.01 against 0.5, as high as one
both almost surely get right, 0.99 against 0.9999.)

No vocabulary is kept: hashing needs none, so a model is two weight vectors,
a few weights for the scorer's facts, and a threshold. The choices, and what
each was worth in cross-validation on MMLU's training halves: BENCHMARKS.md.

Only the first HEAD_CHARS and last TAIL_CHARS characters are read, for
training and for routing alike (the local scorer reads as much), so that a
decision takes about as long on a 12 KB prompt as on a 4 KB one.

The trace gets the score and each tier's predicted chance of answering well.

A model is stored as JSON plus the nonzero weights as little-endian arrays
(`to_bytes` / `from_bytes`): nothing is unpickled, so a stored model cannot
run code when it is loaded. Format 2 models (scored by the log-odds'
difference, their threshold in that scale) still load and route as trained.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from routing.learned.evaluation import threshold_for_share
from routing.learned.graded import Graded
from routing.strategies.complexity import CATEGORIES, score_prompt

FEATURES = 2**18
HEAD_CHARS = 3000
TAIL_CHARS = 1000
REGULARIZATION = 1.0
FORMAT = 3
# How a model's score is computed; format 2 models knew only the log-odds' difference.
PROBABILITY, LOG_ODDS = "probability", "log-odds"

_HASHER = HashingVectorizer(n_features=FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2")
# Beside the words, what the local scorer reads (routing/strategies/complexity.py): each category's cues and
# the length. The hashed words are normalised, so without the length a model does not see how long a prompt is.
FACTS = (*CATEGORIES, "length")
# Cue scores and length brought near the hashed features' scale: a category's cues score up to about 10.
_CUE_SCALE = 10
_LONG_CHARS = 4000


class TrainingError(ValueError):
    """The graded prompts cannot train a router; the message says why, for the admin."""


def _sample(text: str) -> str:
    return text if len(text) <= HEAD_CHARS + TAIL_CHARS else f"{text[:HEAD_CHARS]}\n{text[-TAIL_CHARS:]}"


def _facts(text: str) -> list[float]:
    """The FACTS of a prompt, in their order."""
    cues = score_prompt(text)
    return [*(cues[category] / _CUE_SCALE for category in CATEGORIES), min(1.0, len(text) / _LONG_CHARS)]


Weights = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True, slots=True)
class Prediction:
    # The strong tier's chance of answering well minus the weak tier's (or, for a format 2 model, the log-odds'
    # difference): higher, more the strong tier's.
    score: float
    weak_ok: float
    strong_ok: float


def _logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


@dataclass(frozen=True, slots=True)
class LearnedRouter:
    # One logistic regression per tier, predicting that it answers well.
    weak: Weights
    weak_bias: float
    strong: Weights
    strong_bias: float
    # Scores at or above it go to the strong tier.
    threshold: float
    target_share: float
    meta: dict[str, Any] = field(default_factory=dict)
    scale: str = PROBABILITY
    # Each tier's weights for FACTS (none in a format 2 model).
    weak_facts: tuple[float, ...] = ()
    strong_facts: tuple[float, ...] = ()

    def predict(self, text: str) -> Prediction:
        features = _HASHER.transform([_sample(text)])
        weak = float(features.data @ self.weak[features.indices]) + self.weak_bias
        strong = float(features.data @ self.strong[features.indices]) + self.strong_bias
        if self.weak_facts or self.strong_facts:
            facts = _facts(text)
            weak += sum(w * f for w, f in zip(self.weak_facts, facts, strict=True))
            strong += sum(w * f for w, f in zip(self.strong_facts, facts, strict=True))
        p_weak, p_strong = _logistic(weak), _logistic(strong)
        score = p_strong - p_weak if self.scale == PROBABILITY else strong - weak
        return Prediction(score, p_weak, p_strong)

    def score(self, text: str) -> float:
        return self.predict(text).score

    def wants_strong(self, score: float) -> bool:
        return score >= self.threshold

    def to_bytes(self) -> bytes:
        arrays = {"weak": self.weak, "strong": self.strong}
        nonzero = {name: np.flatnonzero(weights).astype("<u4") for name, weights in arrays.items()}
        header = json.dumps(
            {
                "format": FORMAT,
                "features": FEATURES,
                "weak_bias": self.weak_bias,
                "strong_bias": self.strong_bias,
                "threshold": self.threshold,
                "target_share": self.target_share,
                "scale": self.scale,
                "facts": FACTS,
                "weak_facts": self.weak_facts,
                "strong_facts": self.strong_facts,
                "meta": self.meta,
                "nonzero": {name: int(indices.size) for name, indices in nonzero.items()},
            }
        ).encode()
        out = io.BytesIO()
        out.write(struct.pack("<I", len(header)))
        out.write(header)
        for name, weights in arrays.items():
            out.write(nonzero[name].tobytes())
            out.write(weights[nonzero[name]].astype("<f4").tobytes())
        return out.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LearnedRouter:
        """The stored model; ValueError if `blob` is not one this code can read (another format, or damaged)."""
        try:
            (size,) = struct.unpack_from("<I", blob, 0)
            header = json.loads(blob[4 : 4 + size])
            version, features = header.get("format"), header.get("features")
        except (struct.error, ValueError, AttributeError) as exc:
            raise ValueError(f"a damaged stored router model ({type(exc).__name__}: {exc})") from exc
        if version not in (2, FORMAT) or features != FEATURES or header.get("facts", list(FACTS)) != list(FACTS):
            raise ValueError(f"a stored router model of another format ({version}, {features} features)")
        try:
            offset = 4 + size
            arrays = {}
            for name in ("weak", "strong"):
                count = header["nonzero"][name]
                indices = np.frombuffer(blob, dtype="<u4", count=count, offset=offset)
                values = np.frombuffer(blob, dtype="<f4", count=count, offset=offset + 4 * count)
                offset += 8 * count
                weights = np.zeros(FEATURES, dtype=np.float32)
                weights[indices] = values
                arrays[name] = weights
            return cls(
                arrays["weak"],
                float(header["weak_bias"]),
                arrays["strong"],
                float(header["strong_bias"]),
                float(header["threshold"]),
                float(header["target_share"]),
                header["meta"],
                header.get("scale", LOG_ODDS),
                tuple(float(w) for w in header.get("weak_facts", ())),
                tuple(float(w) for w in header.get("strong_facts", ())),
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"a damaged stored router model ({type(exc).__name__}: {exc})") from exc


def _fit(features: Any, labels: Sequence[bool]) -> tuple[np.ndarray[Any, Any], float]:
    """Weights and intercept predicting `labels`; a label that never varies is its prior alone."""
    if len(set(labels)) < 2:
        prior = 0.999 if labels and labels[0] else 0.001
        return np.zeros(features.shape[1]), float(np.log(prior / (1 - prior)))
    model = LogisticRegression(C=REGULARIZATION, max_iter=2000).fit(features, labels)
    return model.coef_[0], float(model.intercept_[0])


def router_train(rows: Sequence[Graded], *, target_share: float) -> LearnedRouter:
    """A router trained on `rows`, its threshold set to send at most `target_share` of them to the strong tier."""
    if len(rows) < 10:
        raise TrainingError(f"Too few graded prompts to train on: {len(rows)} (at least 10).")
    if not any(r.strong_ok != r.weak_ok for r in rows):
        raise TrainingError("No graded prompt tells the tiers apart: each was answered equally well by both.")
    if not 0 <= target_share <= 1:
        raise TrainingError("The target share of strong calls must be between 0 and 1.")
    words = _HASHER.transform([_sample(r.prompt) for r in rows])
    features = sparse.hstack([words, sparse.csr_matrix([_facts(r.prompt) for r in rows])]).tocsr()
    strong, strong_bias = _fit(features, [r.strong_ok for r in rows])
    weak, weak_bias = _fit(features, [r.weak_ok for r in rows])
    router = LearnedRouter(
        weak[:FEATURES].astype(np.float32),
        weak_bias,
        strong[:FEATURES].astype(np.float32),
        strong_bias,
        0.0,
        target_share,
        weak_facts=tuple(float(w) for w in weak[FEATURES:]),
        strong_facts=tuple(float(w) for w in strong[FEATURES:]),
    )
    threshold = threshold_for_share([router.score(r.prompt) for r in rows], target_share)
    return dataclasses.replace(router, threshold=threshold, meta={"prompts": len(rows)})
