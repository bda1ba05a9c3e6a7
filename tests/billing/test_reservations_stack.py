"""Caps by reservation across processes: two web processes and two workers hold one cap as one, and a
killed worker's reservation ends with its call.

These run a stack of their own (tests/stack.py) on another Redis database,
whose spend counters and reservations they read directly.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from decimal import Decimal
from typing import Any

import openai
import pytest
import redis
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from billing.caps.counters import counter_for
from billing.caps.reservations import LEASES_KEY, held_key
from billing.models import SpendCap, UsageRecord
from billing.money import to_units
from routing.models import Provider
from tests import stack
from tests.billing.test_caps_api import FOUR_O_CALL, FOUR_O_RESERVED, HELLO
from tests.billing.test_reservations import wait_for
from tests.fakes.openai import FakeOpenAI
from tests.spend_state import spend_state_clear
from tests.stack import ROOT, stop, web_process, worker

pytestmark = pytest.mark.django_db(transaction=True)

stack_env = stack.stack_env


@pytest.fixture
def stack_redis(stack_env: dict[str, str]) -> Iterator[redis.Redis]:
    """The stack's Redis, without the spend state an earlier test left for user ids this one may reuse."""
    client = redis.Redis.from_url(stack_env["REDIS_URL"])
    spend_state_clear(client)
    yield client
    client.close()


def _units(client: redis.Redis, key: str) -> int:
    value = client.get(key)
    return 0 if value is None else int(value)


def _sdk(url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=90)


def test_two_web_processes_and_two_workers_start_exactly_the_50_calls_a_cap_fits_of_200(
    stack_env: dict[str, str],
    stack_redis: redis.Redis,
    registry: dict[str, Any],
    upstream: FakeOpenAI,
    alice: Any,
    api_key: str,
    celery_worker: Any,
) -> None:
    # The provider holds every answer until the test releases them: more than the 5 s the registry allows.
    Provider.objects.filter(name="up2").update(timeout_seconds=90)
    SpendCap.objects.create(user=alice, limit_usd=50 * FOUR_O_RESERVED)
    counter = counter_for("user", alice.pk, "month", timezone.now())
    upstream.hold()
    refused: list[openai.RateLimitError] = []
    # Nothing dies here: the stack's 2-3 s broker and lease timings, meant for tests that kill a worker, would
    # let a loaded machine's late lease renewal pass a held call for a dead one and run it again.
    patient = {**stack_env, "CELERY_VISIBILITY_TIMEOUT": "600", "SWITCHYARD_RUN_LEASE_SECONDS": "60"}
    with ExitStack() as processes:
        urls = [processes.enter_context(web_process(patient)) for _ in range(2)]
        # Enough threads that all 50 calls run at once even if each comes in a task message of its own.
        workers = [worker(patient, concurrency=50) for _ in range(2)]
        processes.callback(lambda: [stop(w) for w in workers])
        clients = [_sdk(url, api_key) for url in urls]

        def call(n: int) -> str:
            try:
                clients[n % 2].chat.completions.create(model="up2/gpt-4o", messages=HELLO, max_tokens=10)
            except openai.RateLimitError as refusal:
                refused.append(refusal)
                return "refused"
            return "answered"

        with ThreadPoolExecutor(max_workers=200) as pool:
            outcomes = pool.map(call, range(200))
            wait_for(lambda: len(refused) == 150, "150 calls refused")
            assert _units(stack_redis, held_key(counter)) == 50 * to_units(FOUR_O_RESERVED)
            # Each admitted call is in progress at the provider, its reservation held, while the others are refused.
            wait_for(lambda: len(upstream.requests) == 50, "50 calls at the provider")
            upstream.release()
            results = list(outcomes)

    assert results.count("answered") == 50
    assert all(r.code == "insufficient_quota" for r in refused)
    assert len(upstream.requests) == 50
    records = UsageRecord.objects.filter(user=alice)
    assert records.count() == 50
    spent = records.aggregate(total=Sum("cost_usd"))["total"]
    assert spent == 50 * FOUR_O_CALL <= 50 * FOUR_O_RESERVED
    assert _units(stack_redis, held_key(counter)) == 0
    assert _units(stack_redis, counter.key) == to_units(spent)
    assert stack_redis.zcard(LEASES_KEY) == 0
    # Two workers booked into the same rollup at once: it sums every record.
    call_command("check_rollups")


def test_a_worker_killed_while_it_holds_a_reservation_ends_it_once_and_books_the_call_once(
    stack_env: dict[str, str],
    stack_redis: redis.Redis,
    registry: dict[str, Any],
    upstream: FakeOpenAI,
    alice: Any,
    api_key: str,
    celery_worker: Any,
) -> None:
    # Room for one call only: the redelivered call must find its own reservation, or take it again.
    Provider.objects.filter(name="up2").update(timeout_seconds=90)
    SpendCap.objects.create(user=alice, limit_usd=Decimal("0.0003"))
    counter = counter_for("user", alice.pk, "month", timezone.now())
    upstream.hold()
    with ExitStack() as processes:
        url = processes.enter_context(web_process(stack_env))
        first = worker(stack_env)
        processes.callback(stop, first, signal.SIGKILL)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                _sdk(url, api_key).chat.completions.create, model="up2/gpt-4o", messages=HELLO, max_tokens=10
            )
            wait_for(lambda: len(upstream.requests) == 1, "the call at the provider")
            assert _units(stack_redis, held_key(counter)) == to_units(FOUR_O_RESERVED)
            stop(first, signal.SIGKILL)
            # Nobody renews the dead worker's lease (3 s in the stack): the reconciliation frees its hold.
            time.sleep(4)
            reconciled = subprocess.run(
                [sys.executable, "manage.py", "reconcile_spend"],
                cwd=ROOT,
                env=stack_env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert "1 lapsed reservations released" in reconciled.stdout
            assert _units(stack_redis, held_key(counter)) == 0
            upstream.release()
            second = worker(stack_env)
            processes.callback(stop, second)
            answer = pending.result(timeout=60)

    assert answer.choices[0].message.content
    records = list(UsageRecord.objects.filter(request_id=answer.id))
    assert len(records) == 1
    assert records[0].status == "ok"
    assert records[0].cost_usd == FOUR_O_CALL
    # Sent again by the new worker, which reserved again before it did: the provider saw it twice, before any token.
    assert len(upstream.requests) == 2
    assert _units(stack_redis, held_key(counter)) == 0
    # Counted once; or dropped, for the next check to rebuild from the records, when the call's second
    # delivery (the broker's, or the web's push of a call that showed no sign of life) found it booked.
    assert stack_redis.get(counter.key) in (None, str(to_units(FOUR_O_CALL)).encode())
    assert stack_redis.zcard(LEASES_KEY) == 0
    call_command("check_rollups")
