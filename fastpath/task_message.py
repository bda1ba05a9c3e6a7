"""A Celery task message, built and pushed without kombu's synchronous producer.

Celery's `apply_async` is synchronous (kombu writes to Redis with a blocking
socket) and costs about a millisecond of CPU per call. On /v1's hot path the
message is instead built with Celery's own protocol code (`amqp.as_task_v2`,
so it follows the pinned Celery's format), wrapped in the envelope kombu's
Redis transport reads, and pushed with the lean asyncio client
(fastpath/resp.py), exactly where kombu would put it. The worker side is
plain Celery.

What it costs: the envelope follows kombu's Redis transport as pinned in
requirements.txt; a Celery or kombu upgrade that changes it must be checked
here (tests/gateway/test_dispatch.py runs messages built here through a real
worker).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from celery import Celery


def task_message(
    app: Celery, *, task_name: str, task_id: str, args: list[Any], argsrepr: str, queue: str, redelivered: bool = False
) -> bytes:
    """The message of one task, as kombu's Redis transport would LPUSH it onto `queue`.

    `redelivered` marks it as a message delivered again, as kombu marks one
    it restores after its worker died; the task sees it in
    `request.delivery_info["redelivered"]`.
    """
    message = app.amqp.as_task_v2(
        task_id, task_name, args=args, kwargs={}, ignore_result=True, argsrepr=argsrepr, kwargsrepr="{}"
    )
    body = json.dumps(message.body, separators=(",", ":")).encode()
    headers = dict(message.headers)
    delivery_info: dict[str, Any] = {"exchange": "", "routing_key": queue}
    if redelivered:
        headers["redelivered"] = True
        delivery_info["redelivered"] = True
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": delivery_info,
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope, separators=(",", ":")).encode()
