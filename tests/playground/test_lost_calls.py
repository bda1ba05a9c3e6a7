"""A run whose task message Redis lost before any worker took it: its page's stream pushes it again.

The run's page is served by a stack of its own (tests/stack.py), which starts with no worker.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
import redis
from django.test import Client

from playground.models import PlaygroundRun, RunPanel
from tests import stack
from tests.playground.conftest import session_cookie
from tests.playground.test_streaming import events_of
from tests.stack import stop, worker

pytestmark = pytest.mark.django_db(transaction=True)

stack_env = stack.stack_env
web = stack.web

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def test_a_run_flushed_from_the_queue_before_a_worker_took_it_is_pushed_again_by_its_page(
    stack_env: dict[str, str], web: str, sim: dict[str, Any], alice_client: Client
) -> None:
    broker = redis.Redis.from_url(stack_env["REDIS_URL"])
    running = None
    with httpx.Client(base_url=web, cookies=session_cookie(alice_client), timeout=30) as browser:
        form = browser.get("/playground/")
        token = CSRF_INPUT.search(form.text)
        assert token is not None
        started = browser.post(
            "/playground/",
            data={
                "prompt": "Explain how tides work.",
                "models": ["sim/quick", "sim/paced"],
                "csrfmiddlewaretoken": token[1],
            },
        )
        assert started.status_code == 302, started.text[:500]
        run = PlaygroundRun.objects.get()
        deadline = time.monotonic() + 20
        while not broker.llen("celery"):
            assert time.monotonic() < deadline, "the run's calls never reached the queue"
            time.sleep(0.05)
        broker.flushdb()
        try:
            running = worker(stack_env)
            with browser.stream("GET", f"/playground/runs/{run.pk}/events/", timeout=90) as response:
                names = [event.name for event in events_of(response)]
        finally:
            if running is not None:
                stop(running)
        broker.close()
    assert {"done-0", "done-1", "summary", "done"} <= set(names)
    assert [panel.status for panel in run.panels.all()] == [RunPanel.Status.OK, RunPanel.Status.OK]
