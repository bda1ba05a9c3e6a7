"""Write the routing configuration (providers, models, prices, routes) as YAML: routing/config_file.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandParser

from routing.config_file import config_export


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", type=Path, help="the file to write (standard output by default)")

    def handle(self, *args: Any, **options: Any) -> None:
        text = yaml.safe_dump(config_export(), sort_keys=False, allow_unicode=True)
        if options["output"] is None:
            self.stdout.write(text, ending="")
        else:
            options["output"].write_text(text, encoding="utf-8")
            self.stdout.write(f"Wrote {options['output']}.")
