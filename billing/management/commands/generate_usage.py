"""`manage.py generate_usage`: realistic usage records in bulk, with their rollups (billing/usage_generation.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.usage_generation import usage_generate

# A progress line every this many records.
REPORT_EVERY = 500_000


class Command(BaseCommand):
    help = (
        "Insert N realistic usage records for T generated teams of U generated users (created as needed), "
        "spread over the last D days and priced by the price book, then rebuild their rollups."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--records", type=int, required=True, help="how many usage records")
        parser.add_argument("--teams", type=int, required=True, help="how many teams (gen-team-N)")
        parser.add_argument("--users", type=int, required=True, help="how many users (gen-user-N), spread over them")
        parser.add_argument("--days", type=int, default=90, help="the records span the last D days (default 90)")
        parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same calls")

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(done: int) -> None:
            if done % REPORT_EVERY == 0:
                self.stdout.write(f"{done:,} records inserted")

        try:
            generated = usage_generate(
                records=options["records"],
                teams=options["teams"],
                users=options["users"],
                days=options["days"],
                seed=options["seed"],
                progress=progress,
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"{generated.records:,} records inserted in {generated.seconds_inserting:.1f} s "
            f"({generated.records / max(generated.seconds_inserting, 1e-9):,.0f}/s), "
            f"{generated.rollups:,} rollups and {generated.day_rollups:,} day rollups rebuilt "
            f"in {generated.seconds_rolling_up:.1f} s, "
            f"from {generated.since:%Y-%m-%d %H:%M} to {generated.until:%Y-%m-%d %H:%M} UTC."
        )
