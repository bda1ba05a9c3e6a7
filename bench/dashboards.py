"""The team dashboards' server time at millions of usage records, on SQLite and on PostgreSQL.

For each database: generates the records (`manage.py generate_usage`, with
their rollups) into a bench database of its own, unless --reuse finds them
there already; then renders every page of PAGES through the whole Django
stack (middleware, views, templates; Django's test client, in a process of
its own) for each filter set of FILTERS, and prints server time p50/p95 per
page. A streamed page (the CSV export) is read to its end, and its peak
memory (Python's allocations, tracemalloc) is printed for one extra read.

Run:  .venv/bin/python bench/dashboards.py [--records N] [--reuse] [--databases sqlite,postgresql]
      [--postgres-database NAME] [--sqlite-path PATH] [--pages LABEL,…]

PostgreSQL is the server on 127.0.0.1:5432 (user postgres, trust), database
--postgres-database (default BENCH_DATABASE), dropped and created again unless
--reuse; SQLite is the file --sqlite-path (default SQLITE_PATH). --pages times
only the pages whose label starts with one of the given prefixes (for example
"chart spend,chart tokens": the export of a 90-day period at 5M records takes
seconds a request). An embedded Redis
is started for the run and stopped after it. Bounded: --runs requests per
page and filter set; generation by --records.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchyard.settings")

import devstack  # noqa: E402

BENCH_DATABASE = "genbench_dashboards"
SQLITE_PATH = ROOT / "var" / "bench-dashboards.sqlite3"
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"


@dataclass(frozen=True)
class Page:
    """One page to time: a URL name and what follows the team's slug in its arguments.

    A page whose URL name does not exist (yet) is left out, saying so: the
    list names pages that other branches bring.
    """

    label: str
    url_name: str
    extra_args: tuple[str, ...] = ()
    streamed: bool = False
    # Pages with a fixed scope (one call) are timed once, without the filter sets.
    filtered: bool = True
    # The query of a page timed without the filter sets ("{route}": the team's busiest route).
    query: tuple[tuple[str, str], ...] = ()


def pages() -> list[Page]:
    from billing.dashboards.overview import CHARTS

    return [
        Page("teams list", "billing-teams", filtered=False),
        Page("team page", "billing-team"),
        *(Page(f"chart {chart}", "billing-team-chart", (chart,)) for chart in CHARTS),
        Page("call record", "billing-team-record", ("{request_id}",), filtered=False),
        Page("usage list", "billing-team-usage"),
        Page("CSV export", "billing-team-usage-csv", streamed=True),
        # Savings against the dearest model, and the period replayed under the first route (billing/money/).
        Page("savings", "billing-team-savings"),
        Page("calculator fill", "billing-team-calculator", filtered=False, query=(("action", "fill"),)),
        Page("calculator, a route", "billing-team-calculator", filtered=False, query=CALCULATOR_ROUTE_ROW),
    ]


# One row through the team's busiest route: priced at the mix of its last 30 days, read from the rollups.
CALCULATOR_ROUTE_ROW = (
    ("rows-TOTAL_FORMS", "1"),
    ("rows-INITIAL_FORMS", "0"),
    ("rows-0-task", "coding"),
    ("rows-0-target", "{route}"),
    ("rows-0-requests", "100000"),
    ("rows-0-input_tokens", "1500"),
    ("rows-0-output_tokens", "400"),
)


def filter_sets(model: str, user_id: int, now_date: str, since_date: str) -> dict[str, dict[str, str]]:
    """The filters a team lead uses: the default period, 90 days, one model, one user."""
    ninety = {"period": "custom", "since": since_date, "until": now_date}
    return {
        "default (30d)": {},
        "90 days": ninety,
        "90d, one model": {**ninety, "model": model},
        "90d, one user": {**ninety, "user": str(user_id)},
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(runs: int, only: list[str]) -> None:
    """In the bench's child process, with DATABASE_URL and REDIS_URL set: time every page."""
    import django

    django.setup()
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Count
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    from billing.models import Team, TeamMembership, UsageRecord

    team = Team.objects.get(slug="gen-team-000")
    owner = get_user_model().objects.get(
        pk=TeamMembership.objects.filter(team=team, role=TeamMembership.Role.OWNER).values("user_id")[:1]
    )
    records = UsageRecord.objects.filter(team=team)
    print(f"{connection.vendor}: {UsageRecord.objects.count():,} records, team {team.slug}: {records.count():,}")
    since = records.order_by("created_at").values_list("created_at", flat=True).first()
    model = records.values("model").annotate(n=Count("pk")).order_by("-n").values_list("model", flat=True)[:1][0]
    user_id = TeamMembership.objects.filter(team=team).exclude(user=owner).values_list("user_id", flat=True)[:1][0]
    route = records.exclude(route="").values("route").annotate(n=Count("pk")).order_by("-n")[:1][0]["route"]
    request_id = records.order_by("-cost_usd").exclude(cost_usd=None).values_list("request_id", flat=True)[:1][0]
    assert since is not None
    today = dt.datetime.now(dt.UTC).date()
    filters = filter_sets(model, user_id, today.isoformat(), (today - dt.timedelta(days=89)).isoformat())
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(owner)
    header = f"{'page':<22}{'filters':<18}{'p50 ms':>9}{'p95 ms':>9}{'bytes':>12}"
    print(header)
    print("-" * len(header))
    for page in pages():
        if only and not any(page.label.startswith(prefix) for prefix in only):
            continue
        args = [team.slug, *(arg.format(request_id=request_id) for arg in page.extra_args)]
        try:
            url = reverse(page.url_name, args=args if page.url_name != "billing-teams" else [])
        except NoReverseMatch:
            print(f"{page.label:<22}not timed: no URL named {page.url_name!r} on this branch")
            continue
        fixed = {key: value.format(route=route) for key, value in page.query}
        for name, query in filters.items() if page.filtered else [("", fixed)]:
            times, size = [], 0
            for run in range(runs + 1):
                started = time.perf_counter()
                response = client.get(url, query)
                size = (
                    sum(len(chunk) for chunk in response.streaming_content) if page.streamed else len(response.content)
                )
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{url}?{query} answered {response.status_code}")
                # The first request of each warms caches (templates, the registry's snapshot): not counted.
                if run:
                    times.append(elapsed)
            print(
                f"{page.label:<22}{name:<18}{statistics.median(times):>9.1f}{percentile(times, 0.95):>9.1f}{size:>12,}"
            )
            if page.streamed:
                tracemalloc.start()
                response = client.get(url, query)
                for _chunk in response.streaming_content:
                    pass
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                print(f"{'':<22}{'':<18}peak memory while streaming {size:,} bytes: {peak / 2**20:.1f} MiB")


def run(command: list[str], env: dict[str, str]) -> None:
    """A manage.py command at a lower priority: generation shares the machine."""
    result = subprocess.run(["nice", "-n", "10", sys.executable, "manage.py", *command], env=env, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(command)} failed with status {result.returncode}")


def has_records(env: dict[str, str]) -> bool:
    probe = "from billing.models import UsageRecord; print(UsageRecord.objects.exists())"
    try:
        out = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip().endswith("True")


def fresh_database(vendor: str, sqlite_path: Path, postgres_database: str) -> None:
    if vendor == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {postgres_database}")
        connection.execute(f"CREATE DATABASE {postgres_database}")


def vacuumed(postgres_database: str) -> None:
    """The bench database as autovacuum leaves it after a bulk load: with statistics and a visibility map.

    Without the map, PostgreSQL reads every row an index-only scan would skip.
    """
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/{postgres_database}", autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=15, help="timed requests per page and filter set")
    parser.add_argument("--reuse", action="store_true", help="keep the records a bench database holds already")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-database", default=BENCH_DATABASE)
    parser.add_argument("--sqlite-path", type=Path, default=SQLITE_PATH)
    parser.add_argument("--pages", default="", help="comma-separated label prefixes of the pages to time")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.runs, [prefix for prefix in args.pages.split(",") if prefix])
        return
    urls = {"sqlite": f"sqlite:///{args.sqlite_path}", "postgresql": f"{POSTGRES_SERVER}/{args.postgres_database}"}
    children: list[devstack.Child] = []
    try:
        redis_url = devstack.start_redis(devstack.free_port(), port_hint="", into=children)
        base = {**os.environ, "REDIS_URL": redis_url, "SECRET_KEY": secrets.token_urlsafe(50), "LOG_LEVEL": "WARNING"}
        devstack.manage("collectstatic", "--noinput", "-v", "0", env={**base, "DATABASE_URL": urls["sqlite"]})
        for vendor in args.databases.split(","):
            env = {**base, "DATABASE_URL": urls[vendor]}
            if not (args.reuse and has_records(env)):
                fresh_database(vendor, args.sqlite_path, args.postgres_database)
                run(["migrate", "--noinput", "-v", "0"], env)
                run(["load_demo"], env)
                started = time.monotonic()
                run(
                    ["generate_usage", f"--records={args.records}", f"--teams={args.teams}",
                     f"--users={args.users}", f"--days={args.days}"],
                    env,
                )  # fmt: skip
                print(f"{vendor}: generated in {time.monotonic() - started:.0f} s in all")
            else:
                run(["migrate", "--noinput", "-v", "0"], env)
            if vendor == "postgresql":
                vacuumed(args.postgres_database)
            subprocess.run(
                [sys.executable, __file__, "--measure", f"--runs={args.runs}", f"--pages={args.pages}"],
                env=env,
                cwd=ROOT,
                check=True,
            )
    finally:
        devstack.stop(children)


if __name__ == "__main__":
    main()
