"""`manage.py check_rollups`: prove that the dashboards' rollups (hour and day) equal the usage records they sum."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing.rollups.build import (
    day_rollups_check,
    day_rollups_rebuild,
    rollups_check,
    rollups_rebuild,
    rollups_span,
)

# Mismatches printed before the rest are only counted.
SHOWN = 20


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise CommandError(f"{text!r} is not a date or time (2026-11-01, 2026-11-01T09:00)") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = (
        "Compare the usage rollups of a period, hour by hour and slice by slice, with sums of the raw usage "
        "records, and the day rollups of its UTC days with sums of their hour rollups; exit 1 on any difference. "
        "With --rebuild, replace that period's rollups with those sums first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=_moment, help="UTC start (default: the first record or rollup)")
        parser.add_argument("--until", type=_moment, help="UTC end, exclusive (default: now)")
        parser.add_argument("--rebuild", action="store_true", help="rebuild the period's rollups from the records")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = options["since"], options["until"] or timezone.now()
        if since is None:
            span = rollups_span(until)
            if span is None:
                self.stdout.write("No usage records and no rollups: nothing to check.")
                return
            since, until = span
        if since >= until:
            raise CommandError("--since must be before --until.")
        if options["rebuild"]:
            written = rollups_rebuild(since, until)
            self.stdout.write(f"Rebuilt {written} rollups from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC.")
            written = day_rollups_rebuild(since, until)
            days = f"{since:%Y-%m-%d} to {until:%Y-%m-%d}"
            self.stdout.write(f"Rebuilt {written} day rollups of the UTC days from {days}.")
        found = 0
        for mismatch in rollups_check(since, until):
            found += 1
            if found <= SHOWN:
                self.stdout.write(mismatch.describe())
        found_days = 0
        for day_mismatch in day_rollups_check(since, until):
            found_days += 1
            if found + found_days <= SHOWN:
                self.stdout.write(day_mismatch.describe())
        period = f"from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
        if found or found_days:
            raise CommandError(
                f"{found} rollups differ from their records {period}; "
                f"{found_days} day rollups differ from their hour rollups."
            )
        self.stdout.write(f"The rollups equal the usage records {period}, and the day rollups their hour rollups.")
