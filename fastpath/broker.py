"""The Celery broker transport: kombu's Redis transport, minus a new client per acknowledgement.

With acks_late, kombu records every delivered message in its unacked index
and removes it again on acknowledgement; for each of those writes its Redis
channel builds a new redis-py client (`conn_or_acquire` with no client),
and redis-py 8 builds its whole table of response callbacks in each
constructor, a large share of a worker's CPU per task (fastpath/README.md).
The channel here keeps one client on its connection pool for these writes;
it is dropped with the pool whenever kombu disconnects it (errors, forks).

Selected in settings (CELERY_BROKER_TRANSPORT); the broker URL stays redis://.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _pool_client: redis.Redis | None = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        if self._pool_client is None:
            self._pool_client = self._create_client()
        yield self._pool_client

    def _disconnect_pools(self) -> None:
        self._pool_client = None
        super()._disconnect_pools()


class Transport(kombu_redis.Transport):
    Channel = Channel
