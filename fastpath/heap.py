"""Keeping the garbage collector off the long-lived objects of a server process.

A web or worker process holds a few hundred thousand objects for its whole
life (modules, Django's models and URLconf, Celery's app), and each full
collection walked them all again: 1.1-1.6 s of a worker's CPU over the
6,700 calls of a concurrency-100 benchmark phase (bench/gateway_overhead.py,
measured with gc.callbacks). Frozen, they are left out of every collection;
collecting the young generation less often then brought it to 0.3 s, most
of that before start-up ended.
"""

from __future__ import annotations

import gc

# The young generation's threshold (700 by default): a call leaves little cyclic garbage.
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Call once the process has loaded what it keeps for life, before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
