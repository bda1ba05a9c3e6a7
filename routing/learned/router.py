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

A model is stored as JSON plus the nonzero weights as little-endian arrays
(`to_bytes` / `from_bytes`): nothing is unpickled, so a stored model cannot
run code when it is loaded.
"""

from __future__ import annotations

import io
import json
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
FORMAT = 1

_HASHER = HashingVectorizer(n_features=FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2")


class TrainingError(ValueError):
    """The graded prompts cannot train a router; the message says why, for the admin."""


def _sample(text: str) -> str:
    return text if len(text) <= HEAD_CHARS + TAIL_CHARS else f"{text[:HEAD_CHARS]}\n{text[-TAIL_CHARS:]}"


@dataclass(frozen=True, slots=True)
class LearnedRouter:
    # Weak-right minus strong-right weights: the score is their dot product with the prompt's features.
    weights: np.ndarray[Any, np.dtype[np.float32]]
    bias: float
    # Scores at or above it go to the strong tier.
    threshold: float
    target_share: float
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, text: str) -> float:
        """The strong tier's expected gain for this prompt (in log-odds difference): higher, more the strong tier's."""
        features = _HASHER.transform([_sample(text)])
        return float(features.data @ self.weights[features.indices]) + self.bias

    def wants_strong(self, score: float) -> bool:
        return score >= self.threshold

    def to_bytes(self) -> bytes:
        nonzero = np.flatnonzero(self.weights).astype("<u4")
        header = json.dumps(
            {
                "format": FORMAT,
                "features": FEATURES,
                "bias": self.bias,
                "threshold": self.threshold,
                "target_share": self.target_share,
                "meta": self.meta,
                "nonzero": int(nonzero.size),
            }
        ).encode()
        out = io.BytesIO()
        out.write(struct.pack("<I", len(header)))
        out.write(header)
        out.write(nonzero.tobytes())
        out.write(self.weights[nonzero].astype("<f4").tobytes())
        return out.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LearnedRouter:
        (size,) = struct.unpack_from("<I", blob, 0)
        header = json.loads(blob[4 : 4 + size])
        if header.get("format") != FORMAT or header.get("features") != FEATURES:
            raise ValueError("a stored router model of another format")
        count = header["nonzero"]
        start = 4 + size
        indices = np.frombuffer(blob, dtype="<u4", count=count, offset=start)
        values = np.frombuffer(blob, dtype="<f4", count=count, offset=start + 4 * count)
        weights = np.zeros(FEATURES, dtype=np.float32)
        weights[indices] = values
        threshold = header["threshold"]
        return cls(weights, float(header["bias"]), float(threshold), float(header["target_share"]), header["meta"])


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
    weights = (strong - weak).astype(np.float32)
    router = LearnedRouter(weights, strong_bias - weak_bias, 0.0, target_share)
    scores = [router.score(r.prompt) for r in rows]
    threshold = threshold_for_share(scores, target_share)
    return LearnedRouter(weights, router.bias, threshold, target_share, {"prompts": len(rows)})
