"""The learned router: from a prompt, how much more likely the strong tier is to answer it well than the weak one.

Two logistic regressions (scikit-learn) on the same hashed word unigrams and
bigrams of the prompt: one predicts that the weak tier answers well, the
other that the strong tier does. The score is the difference, the expected
gain of sending the prompt up; routing on it beat predicting "only the
strong tier answers well" directly on MMLU (BENCHMARKS.md). No vocabulary is
kept: hashing needs none, so a model is two weight vectors and a threshold.

Only the first HEAD_CHARS and last TAIL_CHARS characters are read, for
training and for routing alike, so that a decision stays under a
millisecond or so whatever the prompt's length.

The trace gets the score and each tier's predicted chance of answering well.

A model is stored as JSON plus the nonzero weights as little-endian arrays
(`to_bytes` / `from_bytes`): nothing is unpickled, so a stored model cannot
run code when it is loaded.
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
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from routing.learned.evaluation import threshold_for_share
from routing.learned.graded import Graded

FEATURES = 2**18
HEAD_CHARS = 3000
TAIL_CHARS = 1000
REGULARIZATION = 1.0
FORMAT = 2

_HASHER = HashingVectorizer(n_features=FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2")


class TrainingError(ValueError):
    """The graded prompts cannot train a router; the message says why, for the admin."""


def _sample(text: str) -> str:
    return text if len(text) <= HEAD_CHARS + TAIL_CHARS else f"{text[:HEAD_CHARS]}\n{text[-TAIL_CHARS:]}"


Weights = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True, slots=True)
class Prediction:
    # The strong tier's log-odds of answering well minus the weak tier's: higher, more the strong tier's.
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

    def predict(self, text: str) -> Prediction:
        features = _HASHER.transform([_sample(text)])
        weak = float(features.data @ self.weak[features.indices]) + self.weak_bias
        strong = float(features.data @ self.strong[features.indices]) + self.strong_bias
        return Prediction(strong - weak, _logistic(weak), _logistic(strong))

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
        (size,) = struct.unpack_from("<I", blob, 0)
        header = json.loads(blob[4 : 4 + size])
        if header.get("format") != FORMAT or header.get("features") != FEATURES:
            raise ValueError("a stored router model of another format")
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
        )


def _fit(features: Any, labels: Sequence[bool]) -> tuple[np.ndarray[Any, Any], float]:
    """Weights and intercept predicting `labels`; a label that never varies is its prior alone."""
    if len(set(labels)) < 2:
        prior = 0.999 if labels and labels[0] else 0.001
        return np.zeros(FEATURES), float(np.log(prior / (1 - prior)))
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
    features = _HASHER.transform([_sample(r.prompt) for r in rows])
    strong, strong_bias = _fit(features, [r.strong_ok for r in rows])
    weak, weak_bias = _fit(features, [r.weak_ok for r in rows])
    router = LearnedRouter(
        weak.astype(np.float32), weak_bias, strong.astype(np.float32), strong_bias, 0.0, target_share
    )
    threshold = threshold_for_share([router.score(r.prompt) for r in rows], target_share)
    return dataclasses.replace(router, threshold=threshold, meta={"prompts": len(rows)})
