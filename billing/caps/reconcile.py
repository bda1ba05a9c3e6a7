"""The minute's reconciliation of what caps read in Redis with what the database says.

Run by Celery beat every minute (billing/tasks.py), and by `manage.py
reconcile_spend`. Two repairs, each safe to run at any moment beside live calls:

- Reservations: those whose lease lapsed (their worker died, their call
  never reached one) are released, and every held total is set to the sum
  of the live reservations on it, in one script.
- Counters: each spend counter in Redis is compared with the sum of its
  usage records. A counter below the sum missed a record (counted while the
  counter was missing, committed after a rebuild read the database:
  billing/caps/counters.py) and is set to the sum at once. A counter above
  the sum is normal for the moment between a call's count and its record's
  commit, so it is set to the sum only when the same two figures are seen
  on two runs in a row. Either way the counter is set only if it still holds
  the value that was compared (a compare-and-set script), so a call counted
  meanwhile is never lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from billing.caps.counters import Counter, counter_for, units_from_db
from billing.caps.reservations import HELD_PREFIX, SPEND_PREFIX, reservations_rehold
from switchyard.redis_clients import get_redis

logger = logging.getLogger(__name__)

# Per counter key, the "counter:database" figures of the last run that found them apart.
SEEN_KEY = "sy:reconcile:seen"
# Counters compared per database query.
BATCH = 200

_SET_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Reconciled:
    counters: int
    corrected: int
    reservations_lapsed: int


def spend_reconcile() -> Reconciled:
    client = get_redis()
    lapsed = reservations_rehold([key.decode() for key in client.scan_iter(match=HELD_PREFIX + "*", count=1000)])
    checked = corrected = 0
    for batch in _batches(_counters_in_redis(), BATCH):
        checked += len(batch)
        corrected += _reconcile(batch)
    if corrected or lapsed:
        logger.warning("spend reconciliation: %d counters corrected, %d reservations lapsed", corrected, lapsed)
    return Reconciled(checked, corrected, lapsed)


def _counters_in_redis() -> Iterator[Counter]:
    for raw in get_redis().scan_iter(match=SPEND_PREFIX + "*", count=1000):
        key = raw.decode()
        try:
            kind, subject_id, period, start = key.removeprefix(SPEND_PREFIX).split(":")
            when = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)
            counter = counter_for(kind, int(subject_id), period, when)
        except ValueError:
            continue
        if counter.key == key:
            yield counter


def _batches(counters: Iterator[Counter], size: int) -> Iterator[list[Counter]]:
    batch: list[Counter] = []
    for counter in counters:
        batch.append(counter)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _reconcile(counters: list[Counter]) -> int:
    client = get_redis()
    # Read before the database: a call counted after this read and committed
    # before the database's makes the counter look low, but it then no
    # longer holds the value read, and the compare-and-set leaves it alone.
    in_redis = client.mget([c.key for c in counters])
    in_db = units_from_db(counters)
    seen = client.hmget(SEEN_KEY, [c.key for c in counters])
    corrected = 0
    pipe = client.pipeline(transaction=False)
    for counter, raw, last in zip(counters, in_redis, seen, strict=True):
        if raw is None:
            continue
        units, truth = int(raw), in_db[counter.key]
        figures = f"{units}:{truth}"
        if units == truth:
            pipe.hdel(SEEN_KEY, counter.key)
        elif units < truth or (isinstance(last, bytes) and last.decode() == figures):
            corrected += client.eval(_SET_IF_UNCHANGED, 1, counter.key, units, truth)
            pipe.hdel(SEEN_KEY, counter.key)
        else:
            pipe.hset(SEEN_KEY, counter.key, figures)
    # Figures of counters gone since are forgotten with the hash.
    pipe.expire(SEEN_KEY, 600)
    pipe.execute()
    return corrected
