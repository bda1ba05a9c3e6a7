"""Apply a routing configuration file as export_config writes it, printing each change: routing/config_file.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.config_file import ConfigError, config_import


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="print the changes and make none")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = yaml.safe_load(options["file"].read_text(encoding="utf-8"))
            changes = config_import(data, dry_run=options["dry_run"])
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror}.") from None
        except yaml.YAMLError as exc:
            raise CommandError(f"{options['file']} is not valid YAML: {exc}") from None
        except ConfigError as exc:
            raise CommandError(f"Nothing was changed. {exc}") from None
        for line in changes:
            self.stdout.write(line)
        made = sum(1 for line in changes if not line.startswith(" "))
        if options["dry_run"]:
            self.stdout.write(f"Dry run: {made} change(s) shown, none made.")
        else:
            self.stdout.write(f"Applied {made} change(s).")
