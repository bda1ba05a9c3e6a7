"""The official OpenAI JavaScript SDK against /v1, under Node.

tests/js pins the `openai` npm package; `make test` installs it where node and
npm exist. Without them this test is skipped, and a warning in the summary
says so: a skip alone is easy to miss.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = shutil.which("node")


def _missing() -> str:
    """Why the SDK cannot run here, or "" when it can."""
    if NODE is None:
        return "node is not installed. Install Node.js 20 or later and run `make test`."
    if not (JS_DIR / "node_modules" / "openai" / "package.json").is_file():
        return "the openai npm package is not installed. Run `npm ci --prefix tests/js` (`make test` does)."
    return ""


MISSING = _missing()
if MISSING:
    # Warned at collection: once the Celery worker has set up its logging, a
    # warning raised in a test goes to the log instead of pytest's summary.
    warnings.warn(f"The JavaScript SDK is NOT tested: {MISSING}", UserWarning, stacklevel=1)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.skipif(bool(MISSING), reason=MISSING)]


def test_the_javascript_sdk_streams_a_completion_with_usage(
    gateway_url: str, celery_worker: Any, registry: dict[str, Any], api_key: str
) -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(JS_DIR / "stream.mjs")],
        env={
            **os.environ,
            "SWITCHYARD_BASE_URL": f"{gateway_url}/v1",
            "SWITCHYARD_API_KEY": api_key,
            "SWITCHYARD_MODEL": "up/gpt-4o-mini",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # The recorded stream of the fake OpenAI upstream, relayed.
    assert seen["text"] == "Hello! How can I assist you today?"
    assert seen["usage"] == {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost": 0.00000885,
        "attempts": [{"model": "up/gpt-4o-mini", "outcome": "ok"}],
    }
    assert seen["finishReasons"] == ["stop"]
    assert seen["model"] == "up/gpt-4o-mini"
