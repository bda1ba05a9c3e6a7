"""The ASGI entry point: /v1 goes to the lean gateway app, everything else to Django."""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

from fastpath import heap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchyard.settings")

django_application = get_asgi_application()

from routing.gateway.app import GatewayApp  # noqa: E402  (needs Django set up)

gateway_application = GatewayApp()

heap.settle()


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and (scope["path"] == "/v1" or scope["path"].startswith("/v1/")):
        await gateway_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)
