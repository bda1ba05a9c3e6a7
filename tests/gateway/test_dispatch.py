"""Calls handed to the workers together travel in shared task messages, and each still runs and is booked once."""

from __future__ import annotations

import asyncio
import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
import redis

from routing.calls.dispatch import MAX_CALLS_PER_MESSAGE, call_enqueue
from routing.calls.spec import CallSpec
from switchyard.celery import app as celery_app
from tests.call_specs import call_spec
from tests.usage_records import all_booked

pytestmark = pytest.mark.django_db(transaction=True)


def _spec(user_id: int) -> CallSpec:
    return call_spec("sim/swift", user_id=user_id, publish_deltas=False)


def _calls_of(message: bytes) -> list[dict[str, Any]]:
    envelope = json.loads(message)
    args, _, _ = json.loads(base64.b64decode(envelope["body"]))
    assert envelope["headers"]["task"] == "routing.run_calls"
    return args[0]


def test_calls_enqueued_together_share_messages_of_at_most_the_cap_and_the_worker_books_each_once(
    registry: dict[str, Any],
    alice: Any,
    celery_worker: Any,
    redis_client: redis.Redis,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A queue no worker reads, to look at the messages before they run.
    held = f"{redis_prefix}held"
    monkeypatch.setitem(celery_app.conf, "task_default_queue", held)
    specs = [_spec(alice.pk) for _ in range(MAX_CALLS_PER_MESSAGE + 4)]

    async def enqueue_all() -> None:
        await asyncio.gather(*(call_enqueue(spec) for spec in specs))

    asyncio.run(enqueue_all())

    # Kombu's consumer pops from the right: the first calls come first.
    messages = [redis_client.rpop(held) for _ in range(redis_client.llen(held))]
    shared = [_calls_of(message) for message in messages]
    assert [len(calls) for calls in shared] == [MAX_CALLS_PER_MESSAGE, 4]
    assert [call["call_id"] for calls in shared for call in calls] == [spec.call_id for spec in specs]
    assert [CallSpec.from_json(call) for calls in shared for call in calls] == specs

    monkeypatch.undo()
    redis_client.lpush(celery_app.conf.task_default_queue, *messages)
    records = all_booked(len(specs), requested="sim/swift")
    assert sorted(records.values_list("request_id", flat=True)) == sorted(spec.call_id for spec in specs)
    assert {record.status for record in records} == {"ok"}


def test_concurrent_clients_each_get_their_own_answer_and_record(client: openai.OpenAI) -> None:
    def call(number: int) -> Any:
        return client.chat.completions.with_raw_response.create(
            model="sim/swift", messages=[{"role": "user", "content": f"Question {number}?"}]
        )

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(call, range(12)))

    request_ids = [raw.headers["x-request-id"] for raw in responses]
    assert len(set(request_ids)) == 12
    assert all(raw.parse().choices[0].message.content for raw in responses)
    records = all_booked(12, requested="sim/swift")
    assert sorted(records.values_list("request_id", flat=True)) == sorted(request_ids)
