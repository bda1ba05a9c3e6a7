"""The usage export's memory and the usage list's query plans, on a generated ledger.

Generates --records usage records for one team (once: a later run reuses
them), then:
- prints the query plan (EXPLAIN) of the list's pages and the export's
  batches: an owner's first page, a member's, /me/'s, a page deep in the
  list (keyset: it starts at its cursor), and one export batch;
- exports a quarter of the records and then all of them, as the CSV view
  streams them (keyset batches through billing.usage_csv.csv_lines), and
  prints each export's rows/s, its peak Python memory (tracemalloc, on a
  second run: tracing slows Python) and the process's peak RSS: constant
  memory shows as the same peak for 4x the rows.

Run:  .venv/bin/python bench/usage_export.py [--records 200000] [--database-url postgres://…]
(default database: var/bench_usage_export.sqlite3, made for it).

Bounded: one generation of --records rows, two exports, a few EXPLAINs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchyard.settings")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--records", type=int, default=200_000)
parser.add_argument("--database-url", default=f"sqlite:///{ROOT / 'var' / 'bench_usage_export.sqlite3'}")
args = parser.parse_args()
os.environ["DATABASE_URL"] = args.database_url

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from billing.dashboards.access import PersonalAccess, TeamAccess  # noqa: E402
from billing.dashboards.usage_list import (  # noqa: E402
    EXPORT_BATCH_ROWS,
    Cursor,
    keyset_batches,
    older_than,
    with_unpriced,
)
from billing.models import Team, TeamMembership, UsageRecord  # noqa: E402
from billing.usage_csv import FIELDS, csv_lines  # noqa: E402

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
USERS = 20
MODELS = (("up/gpt-4o", "2.5", "10"), ("up/mini", "0.15", "0.6"), ("an/claude", "3", "15"), ("local/llama", None, None))


def ledger(n: int) -> tuple[Team, list[object]]:
    team, _ = Team.objects.get_or_create(slug="bench-export", defaults={"name": "Bench export"})
    users = [get_user_model().objects.get_or_create(username=f"bench-export-{i}")[0] for i in range(USERS)]
    for user in users:
        TeamMembership.objects.get_or_create(team=team, user=user)
    have = UsageRecord.objects.filter(team=team).count()
    started = time.perf_counter()
    for start in range(have, n, 5000):
        rows = []
        for i in range(start, min(n, start + 5000)):
            model, inp, out = MODELS[i % len(MODELS)]
            priced = inp is not None
            rows.append(
                UsageRecord(
                    request_id=f"bench-export-{i}",
                    # Several calls per second, ties included, over about 60 days.
                    created_at=NOW - dt.timedelta(seconds=i * 26 // 1),
                    user=users[i % USERS],
                    team=team,
                    requested=model,
                    route="auto" if i % 3 else "",
                    model=model,
                    provider=model.split("/")[0],
                    status="ok",
                    input_tokens=1000 + i % 977,
                    output_tokens=200 + i % 311,
                    cached_input_tokens=(i % 5) * 100,
                    input_price_per_million=Decimal(inp) if priced else None,
                    output_price_per_million=Decimal(out) if priced else None,
                    cached_input_price_per_million=Decimal(inp) / 10 if priced else None,
                    cache_write_price_per_million=Decimal(inp) if priced else None,
                    cost_usd=Decimal("0.0012345678") if priced else None,
                    latency_ms=800,
                )
            )
        UsageRecord.objects.bulk_create(rows)
    if have < n:
        print(f"generated {n - have:,} records in {time.perf_counter() - started:.1f} s")
        # The planner's statistics, as autovacuum (PostgreSQL) would gather them soon after.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return team, users


def explain(label: str, queryset: object) -> None:
    print(f"\n-- {label}")
    analyze = connection.vendor == "postgresql"
    print(queryset.explain(analyze=analyze) if analyze else queryset.explain())  # type: ignore[attr-defined]


def export(records: object) -> tuple[int, int]:
    """Rows and bytes of one export, streamed as the view streams it."""
    sent = lines = 0
    for text in csv_lines(keyset_batches(records, FIELDS)):  # type: ignore[arg-type]
        sent += len(text)
        lines += text.count("\r\n")
    return lines - 1, sent


def timed_and_traced(records: object) -> tuple[int, int, float, int]:
    """An export timed, then the same export again under tracemalloc (which slows Python down) for its peak."""
    started = time.perf_counter()
    rows, sent = export(records)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    export(records)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return rows, sent, elapsed, peak


def main() -> None:
    call_command("migrate", verbosity=0)
    team, users = ledger(args.records)
    print(f"database: {connection.vendor}, {UsageRecord.objects.filter(team=team).count():,} records of the team")
    owner = TeamAccess(team=team, viewer=users[0], role="owner", sees_members=True)  # type: ignore[arg-type]
    member = TeamAccess(team=team, viewer=users[1], role="member", sees_members=False)  # type: ignore[arg-type]
    since = NOW - dt.timedelta(days=90)
    period = {"created_at__gte": since, "created_at__lt": NOW + dt.timedelta(hours=1)}
    newest_first = ("-created_at", "-pk")
    page = with_unpriced(owner.records().filter(**period)).order_by(*newest_first)
    explain("owner's first page", page[:51])
    explain("member's first page", with_unpriced(member.records().filter(**period)).order_by(*newest_first)[:51])
    personal = PersonalAccess(viewer=users[2])  # type: ignore[arg-type]
    explain("/me/ first page", with_unpriced(personal.records().filter(**period)).order_by(*newest_first)[:51])
    middle = owner.records().order_by(*newest_first)[args.records // 2]
    explain("owner's page half way down (keyset)", page.filter(older_than(Cursor.of(middle)))[:51])
    explain(
        "owner's page half way down, model filter",
        page.filter(older_than(Cursor.of(middle)), model="up/mini")[:51],
    )
    batch = page.values_list(*FIELDS, "created_at", "pk").filter(older_than(Cursor.of(middle)))
    explain("an export batch", batch[:EXPORT_BATCH_ROWS])

    quarter = owner.records().filter(created_at__gte=NOW - dt.timedelta(seconds=args.records // 4 * 26))
    print()
    for label, records in (("a quarter", quarter), ("all", owner.records())):
        rows, sent, elapsed, peak = timed_and_traced(records)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"export of {label}: {rows:,} rows, {sent / 2**20:.1f} MiB of CSV in {elapsed:.1f} s "
            f"({rows / elapsed:,.0f} rows/s); tracemalloc peak {peak / 2**20:.2f} MiB; process peak RSS {rss:.0f} MiB"
        )


main()
