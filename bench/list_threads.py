#!/usr/bin/env python
"""Benchmark GET /api/v1/chat/threads: the first page against a page ~500,000 rows deep.

Run from the project root with DATABASE_URL naming a PostgreSQL server and a role that may create
databases (default postgres://tenex_owner@127.0.0.1:5432/tenex):

    python bench/list_threads.py                    # 1,000,000 threads
    python bench/list_threads.py --threads 20000    # a quick check

It creates (or recreates) a dedicated database, `tenex_bench` by default, migrates it, seeds one
workspace through COPY, then measures in one run: the endpoint in-process through Django's test
client with real keys (service and personal), and a bare baseline of the very SQL the endpoint ran,
sent through psycopg with the row-level-security setting set the same way. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SERVER_URL = "postgres://tenex_owner@127.0.0.1:5432/tenex"
URL = "/api/v1/chat/threads"
WORDS = [
    "renewal", "quote", "pricing", "onboarding", "launch", "email", "campaign", "churn", "demo", "invoice",
    "security", "review", "roadmap", "webinar", "partner", "pilot", "rollout", "budget", "proposal", "contract",
]


# --- command line and database ------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1_000_000, help="threads to seed (default 1,000,000)")
    parser.add_argument("--users", type=int, default=50, help="members owning the threads (default 50)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per case first (default 20)")
    parser.add_argument("--deep", type=int, default=None, help="deep page offset (default: half the threads)")
    parser.add_argument("--database", default="tenex_bench", help="the dedicated database (default tenex_bench)")
    parser.add_argument("--reuse", action="store_true", help="keep an existing bench database that has the rows")
    parser.add_argument("--drop", action="store_true", help="drop the bench database at the end")
    parser.add_argument("--seed", type=int, default=7, help="random seed for the data")
    return parser.parse_args()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_database_url(args: argparse.Namespace) -> str:
    """DATABASE_URL's server and role, pointed at the dedicated bench database (created if needed)."""
    import psycopg
    from psycopg import sql

    server = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL)
    if server.path.lstrip("/") == args.database:
        sys.exit(f"refusing to use DATABASE_URL's own database {args.database!r} as the bench database")
    maintenance = urlunsplit(server._replace(path="/postgres", query=""))
    with psycopg.connect(maintenance, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [args.database]).fetchone()
        if exists and not args.reuse:
            log(f"dropping the previous {args.database}")
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(args.database)))
            exists = None
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.database)))
    return urlunsplit(server._replace(path=f"/{args.database}"))


def drop_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(parts.path.lstrip("/"))))


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenex.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + os.urandom(16).hex())
    # The per-key throttle still runs on every request; it just must not refuse the benchmark.
    os.environ.setdefault("TENEX_RATE_LIMIT", "1000000/min")
    import django

    django.setup()


# --- seeding --------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int, width: int = 30):
        self.label, self.total, self.width = label, total, width
        self.started = time.perf_counter()

    def update(self, done: int) -> None:
        filled = self.width * done // max(self.total, 1)
        elapsed = time.perf_counter() - self.started
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {done:>9,}/{self.total:,} {elapsed:6.1f} s")
        sys.stderr.flush()

    def finish(self) -> None:
        self.update(self.total)
        sys.stderr.write("\n")


def thread_rows(count: int, user_ids: list[str], rng: random.Random, now: datetime) -> Iterator[tuple]:
    """Staged thread rows with realistic recency and many equal activity timestamps.

    90% of threads have minute-resolution activity over the past year (two or so per minute), and
    10% come from ten bulk imports that share one instant each (thousands of exact ties).
    """
    from workspaces.ids import ALPHABET

    imports = [now.replace(microsecond=0) - timedelta(days=rng.uniform(1, 300)) for _ in range(10)]
    minutes = 365 * 24 * 60
    weights = [1 / (rank + 1) ** 0.5 for rank in range(len(user_ids))]  # a few heavy users
    owners = rng.choices(user_ids, weights=weights, k=count)
    for index in range(count):
        if rng.random() < 0.10:
            activity = rng.choice(imports)
        else:
            activity = now.replace(second=0, microsecond=0) - timedelta(minutes=rng.randrange(minutes))
        if rng.random() < 0.7:  # has messages
            created = activity - timedelta(seconds=rng.randrange(30 * 86400))
            last_message, message_count = activity, rng.randint(1, 40)
        else:
            created, last_message, message_count = activity, None, 0
        yield (
            "thr_" + "".join(rng.choices(ALPHABET, k=22)),
            owners[index],
            f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {index}",
            rng.random() < 0.01,  # pinned
            rng.random() < 0.08,  # archived
            message_count,
            created,
            last_message,
            activity,
        )


STAGE_COLUMNS = {
    "id": "text",
    "user_id": "text",
    "title": "text",
    "pinned": "boolean",
    "archived": "boolean",
    "message_count": "integer",
    "created_at": "timestamptz",
    "last_message_at": "timestamptz",
    "activity_at": "timestamptz",
}


def load_threads(workspace_id: str, user_ids: list[str], count: int, seed: int) -> None:
    """COPY into a temporary table, then one INSERT ... SELECT under the workspace's RLS setting.

    COPY FROM refuses tables with row-level security, hence the staging table. Secondary indexes are
    dropped for the load and rebuilt after it (a sorted build beats a million random inserts).
    """
    from django.db import connection, transaction

    from chat.models import Thread
    from workspaces.tenancy import set_database_workspace

    table = Thread._meta.db_table
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with transaction.atomic():
        raw = connection.connection
        with raw.cursor() as cursor:
            columns = ", ".join(f"{name} {kind}" for name, kind in STAGE_COLUMNS.items())
            cursor.execute(f"CREATE TEMPORARY TABLE bench_thread_stage ({columns}) ON COMMIT DROP")
            progress = Progress("copy   ", count)
            with cursor.copy(f"COPY bench_thread_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
                for done, row in enumerate(thread_rows(count, user_ids, rng, now), start=1):
                    copy.write_row(row)
                    if done % 20_000 == 0:
                        progress.update(done)
            progress.finish()

            started = time.perf_counter()
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
                [table, table],
            )
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            set_database_workspace(workspace_id)
            targets, values, params = [], [], []
            for field in Thread._meta.concrete_fields:
                targets.append(f'"{field.column}"')
                if field.column in STAGE_COLUMNS:
                    values.append(field.column)
                elif field.column == "updated_at":
                    values.append("activity_at")
                elif field.column == "workspace_id":
                    values.append("%s")
                    params.append(workspace_id)
                else:  # any other column gets the model's default, cast to its type
                    values.append(f"%s::{field.db_type(connection)}")
                    params.append(field.get_db_prep_save(field.get_default(), connection))
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(targets)}) SELECT {', '.join(values)} FROM bench_thread_stage",
                params,
            )
            # Django's foreign keys are deferred; check them now, since CREATE INDEX refuses to run
            # with trigger events pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            log(f"insert  {count:,} rows under RLS in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for _, definition in indexes:
                cursor.execute(definition)
            log(f"indexes {len(indexes)} rebuilt in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {table}")
    log(f"vacuum  analyzed in {time.perf_counter() - started:.1f} s")


@dataclass
class Fixtures:
    workspace_id: str
    service_key: str
    personal_key: str
    personal_user_id: str


def seed(args: argparse.Namespace) -> Fixtures:
    from chat.models import Thread
    from workspaces.services import api_key_create, member_ensure, workspace_create
    from workspaces.tenancy import tenant_context

    workspace = workspace_create(slug="bench", name="Benchmark")
    users = [member_ensure(workspace=workspace, email=f"user{i:02d}@bench.test") for i in range(args.users)]
    with tenant_context(workspace.pk):
        existing = Thread.objects.for_workspace(workspace.pk).count()
    if existing != args.threads:
        if existing:
            sys.exit(f"{args.database} holds {existing:,} threads, not {args.threads:,}: run without --reuse")
        started = time.perf_counter()
        load_threads(workspace.pk, [u.pk for u in users], args.threads, args.seed)
        log(f"seeded  {args.threads:,} threads in {time.perf_counter() - started:.1f} s")
    else:
        log(f"reusing {existing:,} threads in {args.database}")
    # Secrets are never stored, so every run issues fresh keys.
    service = api_key_create(workspace=workspace, name="bench service").secret
    personal = api_key_create(workspace=workspace, user=users[0], name="bench personal").secret
    return Fixtures(workspace.pk, service, personal, users[0].pk)


# --- measuring ----------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    key: str
    user_id: str | None  # the personal key's user, or None for the whole workspace
    offset: int  # rows before the page


@dataclass
class Result:
    case: Case
    endpoint_ms: list[float]
    baseline_ms: list[float]
    sql: str


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def page_rows(workspace_id: str, user_id: str | None, offset: int, count: int) -> list[tuple[datetime, str]]:
    """(activity_at, id) of the list's rows [offset, offset+count), straight from the database."""
    from chat.models import Thread
    from chat.views import ThreadViewSet
    from workspaces.tenancy import tenant_context

    with tenant_context(workspace_id):
        rows = Thread.objects.for_workspace(workspace_id).filter(archived=False)
        if user_id:
            rows = rows.filter(user_id=user_id)
        return list(rows.order_by(*ThreadViewSet.ordering).values_list("activity_at", "id")[offset : offset + count])


def list_size(workspace_id: str, user_id: str | None) -> int:
    """How many threads the default list (not archived) holds for the workspace or one user."""
    from chat.models import Thread
    from workspaces.tenancy import tenant_context

    with tenant_context(workspace_id):
        rows = Thread.objects.for_workspace(workspace_id).filter(archived=False)
        return (rows.filter(user_id=user_id) if user_id else rows).count()


def largest_tie(workspace_id: str) -> tuple[int, int]:
    """(offset of the middle row, size) of the largest group of equal activity timestamps in the list."""
    from django.db.models import Count

    from chat.models import Thread
    from workspaces.tenancy import tenant_context

    with tenant_context(workspace_id):
        rows = Thread.objects.for_workspace(workspace_id).filter(archived=False)
        group = rows.values("activity_at").annotate(size=Count("id")).order_by("-size", "activity_at").first()
        before = rows.filter(activity_at__gt=group["activity_at"]).count()
    return before + group["size"] // 2, group["size"]


def case_url(case: Case, workspace_id: str) -> str:
    """The list URL; a deep page's cursor is constructed for the row just before `offset`."""
    from chat.views import ThreadViewSet
    from workspaces.pagination import KeysetPagination

    if case.offset == 0:
        return URL
    (before,) = page_rows(workspace_id, case.user_id, case.offset - 1, 1)
    paginator = KeysetPagination()
    paginator.ordering_signature = ",".join(ThreadViewSet.ordering)
    return f"{URL}?cursor={quote(paginator.encode_cursor('n', list(before)))}"


def check_page(client, url: str, workspace_id: str, case: Case) -> str:
    """Fetch the page and two more by `next`, compare with OFFSET; return the endpoint's thread SQL."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    statements = [q["sql"] for q in queries if 'FROM "chat_thread"' in q["sql"]]
    assert len(statements) == 1, statements
    expected = page_rows(workspace_id, case.user_id, case.offset, 60)
    seen = [t["id"] for t in response.json()["results"]]
    for _ in range(2):
        response = client.get(response.json()["next"])
        seen += [t["id"] for t in response.json()["results"]]
    assert seen == [thread_id for _, thread_id in expected], f"{case.name}: pages disagree with OFFSET"
    return statements[0]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(args: argparse.Namespace, fixtures: Fixtures, cases: list[Case], database_url: str) -> list[Result]:
    """Round-robin over the cases, endpoint then baseline each time, so drift and noise hit all alike."""
    import psycopg
    from django.test import Client

    with psycopg.connect(database_url) as bare:

        def runners(case: Case) -> tuple[Callable[[], None], Callable[[], None], str]:
            client = Client(HTTP_AUTHORIZATION=f"Bearer {case.key}")
            url = case_url(case, fixtures.workspace_id)
            sql = check_page(client, url, fixtures.workspace_id, case)

            def endpoint() -> None:
                assert client.get(url).status_code == 200

            def baseline() -> None:
                # The endpoint's transaction minus Django: set the workspace, run the same page SQL.
                with bare.transaction():
                    bare.execute("SELECT set_config('tenex.workspace_id', %s, true)", [fixtures.workspace_id])
                    bare.execute(sql).fetchall()

            return endpoint, baseline, sql

        prepared = [(case, *runners(case)) for case in cases]
        results = [Result(case, [], [], sql) for case, _, _, sql in prepared]
        for _ in range(args.warmup):
            for _, endpoint, baseline, _ in prepared:
                endpoint()
                baseline()
        progress = Progress("measure", args.requests)
        for done in range(1, args.requests + 1):
            for result, (_, endpoint, baseline, _) in zip(results, prepared, strict=True):
                result.endpoint_ms.append(timed(endpoint))
                result.baseline_ms.append(timed(baseline))
            if done % 10 == 0:
                progress.update(done)
        progress.finish()
    return results


def explain(database_url: str, workspace_id: str, sql: str) -> str:
    import psycopg

    with psycopg.connect(database_url) as bare, bare.transaction():
        bare.execute("SELECT set_config('tenex.workspace_id', %s, true)", [workspace_id])
        rows = bare.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").fetchall()
    return "\n".join(row[0] for row in rows)


def report(args: argparse.Namespace, results: list[Result], fixtures: Fixtures, database_url: str) -> None:
    from django.db import connection

    print(
        f"GET {URL}: {args.threads:,} threads in one workspace, {args.users} users; "
        f"{args.requests} timed requests per case (round-robin) after {args.warmup} warm-up; "
        f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}"
    )
    width = max(len(r.case.name) for r in results)
    header = (f"{'case':<{width}}  {'endpoint p50':>12} {'p99':>8}  "
              f"{'baseline p50':>12} {'p99':>8}  {'endpoint/baseline':>17}")
    print(header)
    print("-" * len(header))
    p50 = {}
    for result in results:
        e50, b50 = statistics.median(result.endpoint_ms), statistics.median(result.baseline_ms)
        p50[result.case.name] = (e50, b50)
        print(
            f"{result.case.name:<{width}}  {e50:>9.2f} ms {percentile(result.endpoint_ms, 0.99):>8.2f}"
            f"  {b50:>9.2f} ms {percentile(result.baseline_ms, 0.99):>8.2f}  {e50 / b50:>16.1f}x"
        )
    print("\ndeep/first, p50 (target <= 1.2):")
    first_by_key = {r.case.key: p50[r.case.name] for r in results if r.case.offset == 0}
    for result in results:
        if result.case.offset:
            (e_deep, b_deep), (e_first, b_first) = p50[result.case.name], first_by_key[result.case.key]
            print(f"  {result.case.name:<{width}}  endpoint {e_deep / e_first:.2f}   baseline {b_deep / b_first:.2f}")
    for result in results:
        if "deep" in result.case.name:
            print(f"\nEXPLAIN (ANALYZE, BUFFERS), {result.case.name}:")
            print(explain(database_url, fixtures.workspace_id, result.sql))


def main() -> None:
    args = parse_args()
    total_started = time.perf_counter()
    database_url = bench_database_url(args)
    setup_django(database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    fixtures = seed(args)
    personal_rows = list_size(fixtures.workspace_id, fixtures.personal_user_id)
    deep = args.deep if args.deep is not None else args.threads // 2
    tie_offset, tie_size = largest_tie(fixtures.workspace_id)
    cases = [
        Case("service key, first page", fixtures.service_key, None, 0),
        Case(f"service key, deep page (offset {deep:,})", fixtures.service_key, None, deep),
        Case(f"service key, mid-tie of {tie_size:,} (offset {tie_offset:,})", fixtures.service_key, None, tie_offset),
        Case("personal key, first page", fixtures.personal_key, fixtures.personal_user_id, 0),
        Case(
            f"personal key, deep page (offset {personal_rows // 2:,})",
            fixtures.personal_key,
            fixtures.personal_user_id,
            personal_rows // 2,
        ),
    ]
    results = measure(args, fixtures, cases, database_url)
    report(args, results, fixtures, database_url)
    if args.drop:
        from django.db import connections

        connections.close_all()
        drop_database(database_url)
        log(f"dropped {args.database}")
    log(f"total   {time.perf_counter() - total_started:.1f} s")


if __name__ == "__main__":
    main()
