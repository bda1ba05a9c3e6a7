"""Which run of a call is the live one: a lease in Redis, taken when a worker starts the call and kept while it runs.

The broker may deliver a call's task message more than once: kombu hands an
unacknowledged message to another worker once its visibility timeout has
passed, whether its first worker died or is merely still running a long
call. A run lease tells the two apart: it outlives its worker by at most
CALL_RUN_LEASE_SECONDS, so a second delivery that finds it held waits, and
one that finds it lapsed knows the earlier run is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis
from django.conf import settings

from billing.caps.reservations import extend_command
from fastpath.resp import Command
from routing.calls.keys import queued_key, run_key, stream_key
from routing.catalog import VERSION_KEY
from switchyard.redis_clients import get_resp

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunClaim:
    """claimed is false while another live run holds the lease (a duplicate
    delivery); earlier_output is true when an earlier run already published
    events (it answered, or it ended); catalog_version is for aget_catalog;
    reservation_held is false when the call's reservation against its caps
    lapsed (or it has none)."""

    claimed: bool
    earlier_output: bool
    catalog_version: bytes | None
    reservation_held: bool = False


async def run_claim(call_id: str, *, reserved: bool = False) -> RunClaim:
    """Take the call's run lease, see whether it left the queue's watch, and read the registry's version.

    A `reserved` call's reservation is made to lapse a run lease from now,
    as if the lease carried it. All in one round trip.
    """
    commands: list[Command] = [
        ("SET", run_key(call_id), "1", "NX", "EX", settings.CALL_RUN_LEASE_SECONDS),
        ("XLEN", stream_key(call_id)),
        ("GET", VERSION_KEY),
        ("DEL", queued_key(call_id)),
    ]
    if reserved:
        commands.append(extend_command([call_id], _run_lease()))
    claimed, length, version, _, *held = await get_resp().pipeline(commands)
    return RunClaim(claimed is not None, length > 0, version, bool(held and held[0][0]))


def _run_lease() -> dt.timedelta:
    return dt.timedelta(seconds=settings.CALL_RUN_LEASE_SECONDS)


class LeaseKeeper:
    """Keeps the run leases of the loop's calls alive while they run, in one round trip for them all.

    Each renewal sets the lease whole (not EXPIRE): after a Redis flush the
    lease of a call still running is back within a renewal period, so that
    no other run takes the call meanwhile. A reservation is only extended: one
    lost with a flush is not made again for a call already running.
    """

    def __init__(self) -> None:
        # Each call held, and whether it holds a reservation against its caller's caps.
        self._calls: dict[str, bool] = {}
        self._renewer: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def holding(self, call_id: str, *, reserved: bool = False) -> AsyncIterator[None]:
        self._calls[call_id] = reserved
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())
        try:
            yield
        finally:
            self._calls.pop(call_id, None)
        # The run ended (booked, or its task will be delivered again): its lease is not kept for nothing.
        await get_resp().execute("DEL", run_key(call_id))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(renewal_period())
            calls = list(self._calls.items())
            if not calls:
                continue
            lease = settings.CALL_RUN_LEASE_SECONDS
            commands: list[Command] = [("SET", run_key(call_id), "1", "EX", lease) for call_id, _ in calls]
            reserved = [call_id for call_id, held in calls if held]
            if reserved:
                commands.append(extend_command(reserved, _run_lease()))
            try:
                await get_resp().pipeline(commands)
            except redis.RedisError:
                logger.warning("could not renew %d run leases", len(calls))


def renewal_period() -> float:
    """How often a live run's lease is renewed: a third of its length."""
    period: float = settings.CALL_RUN_LEASE_SECONDS / 3
    return period


lease_keeper = LeaseKeeper()
