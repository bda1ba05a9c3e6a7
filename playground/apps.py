from __future__ import annotations

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "playground"

    def ready(self) -> None:
        from playground import signals

        signals.connect()
