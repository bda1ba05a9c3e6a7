"""The latency histogram's buckets, and percentiles read from summed histograms.

A rollup keeps counts per bucket rather than every latency, so that any
number of rollups sum into one histogram. A percentile read from it is
exact to its bucket and interpolated within it; the buckets are finer where
latencies usually fall.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# Upper bounds (exclusive) in milliseconds; a last bucket takes everything above.
BOUNDS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 40000)
LATENCY_COLUMNS = tuple(f"latency_b{i}" for i in range(len(BOUNDS_MS) + 1))
TTFT_COLUMNS = tuple(f"ttft_b{i}" for i in range(len(BOUNDS_MS) + 1))


def bucket_of(ms: int) -> int:
    return bisect.bisect_right(BOUNDS_MS, ms)


def percentile(counts: Sequence[int], fraction: float) -> float | None:
    """The latency below which `fraction` of the counted calls fall, in ms; None when nothing was counted.

    Interpolated linearly inside its bucket; in the open last bucket it is that bucket's lower bound.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            low = BOUNDS_MS[i - 1] if i else 0
            if i == len(BOUNDS_MS):
                return float(low)
            return low + (BOUNDS_MS[i] - low) * (rank - seen) / count
        seen += count
    return float(BOUNDS_MS[-1])
