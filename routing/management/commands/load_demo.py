"""`python manage.py load_demo`: create the demo providers, models, prices and routes that are missing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from routing import demo, services


class Command(BaseCommand):
    help = (
        "Create the demo registry (a simulated provider, real providers disabled until a key is set, "
        "and routes). Only missing rows are created; existing ones are left as they are."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        summary = services.demo_registry_load(providers=demo.PROVIDERS, routes=demo.ROUTES)
        self.stdout.write(summary.line())
