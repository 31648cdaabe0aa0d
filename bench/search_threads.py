#!/usr/bin/env python
"""Benchmark thread search (`GET /api/v1/chat/threads?q=`) at a million messages against its bare SQL.

Run from the project root with PostgreSQL on 127.0.0.1:5432 (trust auth; `postgres` is a
superuser, `tenex_owner` may create databases, `tenex_app` exists: `scripts/test` creates both):

    .venv/bin/python bench/search_threads.py                       # 1,000,000 messages in 100,000 threads
    .venv/bin/python bench/search_threads.py --threads 5000        # a quick check

It (re)creates a dedicated database (`tenex_bench_search`), migrates it as `tenex_owner`, seeds one
workspace of `--threads` threads of 10 messages (and `--noise` smaller workspaces) through COPY,
then serves the requests as `tenex_app`, the plain role row-level security applies to. It measures
twice: first with PostgreSQL's default catalog, where `tsvector @@ tsquery` is not leakproof and
row-level security keeps the GIN indexes out of every plan, then after `manage.py
enable_search_indexes` (run as the superuser). Each case is the endpoint in-process (Django's test
client, a real service key) against the very SQL it ran, sent through psycopg in a transaction with
the same RLS setting. The database is dropped at the end unless `--keep`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.list_threads import (  # noqa: E402 - the path is set just above
    Progress,
    bench_database_url,
    drop_database,
    log,
    percentile,
    setup_django,
    timed,
)

URL = "/api/v1/chat/threads"
MESSAGES_PER_THREAD = 10
# The words searched for, planted at known rates; the rest of the text is a Zipf-distributed
# vocabulary of made-up words that share no prefix with them.
COMMON, COMMON_RATE = "pricing", 0.15
RARE, RARE_COUNT = "zanzibar", 25
PREFIX, PREFIX_WORDS, PREFIX_RATE = "renew", ("renewal", "renewals", "renewed", "renewing"), 0.01


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=100_000, help="threads in the measured workspace")
    parser.add_argument("--noise", type=int, default=3, help="other workspaces (a tenth of its size each)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per case first")
    parser.add_argument("--before-requests", type=int, default=5, help="requests per case before the fix")
    parser.add_argument("--database", default="tenex_bench_search")
    parser.add_argument("--keep", action="store_true", help="keep the bench database (default: drop it)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure a kept bench database again (its rows are regenerated in memory, not loaded)")
    parser.add_argument("--seed", type=int, default=11)
    return parser.parse_args()


# --- data ---------------------------------------------------------------------------------------
def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 4)))
        if not word.startswith((COMMON[:4], RARE[:4], PREFIX)):
            words.add(word)
    return sorted(words)


@dataclass
class Workspace:
    id: str
    threads: list[tuple[str, datetime]] = field(default_factory=list)  # (id, activity) in creation order
    matches: dict[str, set[str]] = field(default_factory=lambda: {COMMON: set(), RARE: set(), PREFIX: set()})


def generate(workspace: Workspace, count: int, user_id: str, rng: random.Random, words: list[str],
             rare_count: int, threads: list[tuple], messages_copy, progress: Progress, done: int) -> int:
    """`count` threads of MESSAGES_PER_THREAD messages: the messages to the COPY stream, the threads
    to `threads` (one COPY at a time per connection)."""
    from workspaces.ids import ALPHABET

    weights = [1 / (rank + 1) for rank in range(len(words))]
    cumulative = list(_accumulate(weights))
    rare_messages = set(rng.sample(range(count * MESSAGES_PER_THREAD), rare_count))
    now = datetime.now(UTC).replace(microsecond=0)
    for index in range(count):
        thread_id = "thr_" + "".join(rng.choices(ALPHABET, k=22))
        activity = now - timedelta(minutes=rng.randrange(365 * 24 * 60), seconds=index % 60)
        title_words = rng.choices(words, cum_weights=cumulative, k=3)
        if rng.random() < 0.02:
            title_words[0] = COMMON.capitalize()
        title = " ".join(title_words)
        found = {COMMON} if COMMON in title.lower() else set()
        for position in range(1, MESSAGES_PER_THREAD + 1):
            text = rng.choices(words, cum_weights=cumulative, k=rng.randint(8, 30))
            if rng.random() < COMMON_RATE:
                text[rng.randrange(len(text))] = COMMON
                found.add(COMMON)
            if rng.random() < PREFIX_RATE * len(PREFIX_WORDS):
                text[rng.randrange(len(text))] = rng.choice(PREFIX_WORDS)
                found.add(PREFIX)
            if index * MESSAGES_PER_THREAD + position - 1 in rare_messages:
                text[rng.randrange(len(text))] = RARE
                found.add(RARE)
            created = activity - timedelta(minutes=MESSAGES_PER_THREAD - position)
            messages_copy.write_row((
                "msg_" + "".join(rng.choices(ALPHABET, k=22)), workspace.id, thread_id, position,
                "user" if position % 2 else "assistant", " ".join(text).capitalize() + ".", created,
            ))
        threads.append((thread_id, workspace.id, user_id, title, MESSAGES_PER_THREAD, activity))
        workspace.threads.append((thread_id, activity))
        for word in found:
            workspace.matches[word].add(thread_id)
        if (done + index + 1) % 2000 == 0:
            progress.update((done + index + 1) * MESSAGES_PER_THREAD)
    return done + count


def _accumulate(values):
    total = 0.0
    for value in values:
        total += value
        yield total


THREAD_STAGE = "id text, workspace_id text, user_id text, title text, message_count int, activity_at timestamptz"
MESSAGE_STAGE = (
    "id text, workspace_id text, thread_id text, position int, role text, content text, created_at timestamptz"
)


class NoSink:
    def write_row(self, row) -> None:
        pass


def regenerate(workspaces: list[tuple[Workspace, int, str, int]], seed: int) -> None:
    """What `load` wrote with this seed, in memory only: the threads and their matches."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    total = sum(count for _, count, _, _ in workspaces) * MESSAGES_PER_THREAD
    progress, done, threads = Progress("regen  ", total), 0, []
    for workspace, count, user_id, rare in workspaces:
        done = generate(workspace, count, user_id, rng, words, rare, threads, NoSink(), progress, done)
    progress.finish()


def load(owner_url: str, workspaces: list[tuple[Workspace, int, str, int]], seed: int) -> None:
    """COPY into staging tables, then INSERT … SELECT per workspace under its RLS setting (COPY FROM
    refuses tables with row-level security). Secondary indexes, the GIN ones included, are dropped
    for the load and rebuilt from their own definitions after it."""
    import psycopg

    rng = random.Random(seed)
    words = vocabulary(rng)
    total = sum(count for _, count, _, _ in workspaces) * MESSAGES_PER_THREAD
    with psycopg.connect(owner_url) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE stage_thread ({THREAD_STAGE})")
        cursor.execute(f"CREATE TEMPORARY TABLE stage_message ({MESSAGE_STAGE})")
        progress = Progress("copy   ", total)
        done = 0
        threads: list[tuple] = []
        with cursor.copy("COPY stage_message FROM STDIN") as messages_copy:
            for workspace, count, user_id, rare in workspaces:
                done = generate(workspace, count, user_id, rng, words, rare, threads, messages_copy, progress, done)
        with cursor.copy("COPY stage_thread FROM STDIN") as threads_copy:
            for row in threads:
                threads_copy.write_row(row)
        progress.finish()
        started = time.perf_counter()
        indexes = []
        for table in ("chat_thread", "chat_message"):
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
                [table, table],
            )
            indexes += cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for workspace, _, _, _ in workspaces:
            cursor.execute("SELECT set_config('tenex.workspace_id', %s, true)", [workspace.id])
            cursor.execute(
                "INSERT INTO chat_thread (id, workspace_id, user_id, title, title_is_auto, system_prompt, "
                "knowledge_document_ids, context, pinned, archived, message_count, metadata, created_at, "
                "updated_at, last_message_at, activity_at) SELECT id, workspace_id, user_id, title, false, '', "
                "'[]', '{}', false, false, message_count, '{}', activity_at, activity_at, activity_at, "
                "activity_at FROM stage_thread WHERE workspace_id = %s",
                [workspace.id],
            )
            cursor.execute(
                "INSERT INTO chat_message (id, workspace_id, thread_id, position, role, content, status, "
                "tool_calls, usage, created_at, completed_at, last_seq, producer) SELECT id, workspace_id, "
                "thread_id, position, role, content, 'complete', '[]', '{}', created_at, created_at, 0, '' "
                "FROM stage_message WHERE workspace_id = %s",
                [workspace.id],
            )
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        log(f"insert  {total:,} messages under RLS in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            cursor.execute(definition)
        log(f"indexes {len(indexes)} rebuilt in {time.perf_counter() - started:.1f} s")
        conn.commit()
        conn.autocommit = True
        started = time.perf_counter()
        cursor.execute("VACUUM (ANALYZE) chat_thread")
        cursor.execute("VACUUM (ANALYZE) chat_message")
        log(f"vacuum  analyzed in {time.perf_counter() - started:.1f} s")


# --- measuring ----------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    url: str
    expected: list[str] | None  # the first page's thread ids, from the generated data
    endpoint_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    unprepared_ms: list[float] = field(default_factory=list)  # the second floor: see measure()
    statements: list[str] = field(default_factory=list)


def first_page(workspace: Workspace, word: str) -> list[str]:
    matching = [(activity, thread_id) for thread_id, activity in workspace.threads
                if thread_id in workspace.matches[word]]
    return [thread_id for _, thread_id in sorted(matching, reverse=True)[:20]]


def capture(client, case: Case) -> None:
    """Run the case once, check its page against the generated data, keep the search SQL it ran."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(case.url)
    assert response.status_code == 200, response.content[:300]
    results = response.json()["results"]
    if case.expected is not None:
        assert [t["id"] for t in results] == case.expected, f"{case.name}: the page is not the expected one"
    assert all(item["search"]["snippet"] for item in results), f"{case.name}: a result without a snippet"
    case.statements = [q["sql"] for q in queries if "chat_thread" in q["sql"] or "chat_message" in q["sql"]]


def run_bare(bare, workspace_id: str, statements: list[str]) -> None:
    with bare.transaction():
        bare.execute("SELECT set_config('tenex.workspace_id', %s, true)", [workspace_id])
        for sql in statements:
            bare.execute(sql).fetchall()


def measure(cases: list[Case], client, bare, workspace_id: str, requests: int, warmup: int, label: str,
            unprepared=None) -> None:
    """Round-robin over the cases, endpoint then baseline each time, so noise hits all alike.

    `unprepared`, a second floor: the same replay on a connection that never prepares. `bare`
    replays each case's literal text 200 times, so psycopg prepares it after five runs and
    PostgreSQL plans it once; the endpoint's statements, like any request's with other words,
    are planned on each run."""
    for _ in range(warmup):
        for case in cases:
            client.get(case.url)
            run_bare(bare, workspace_id, case.statements)
            if unprepared is not None:
                run_bare(unprepared, workspace_id, case.statements)
    progress = Progress(label, requests)
    for done in range(1, requests + 1):
        for case in cases:
            case.endpoint_ms.append(timed(lambda c=case: client.get(c.url)))
            case.baseline_ms.append(timed(lambda c=case: run_bare(bare, workspace_id, c.statements)))
            if unprepared is not None:
                case.unprepared_ms.append(timed(lambda c=case: run_bare(unprepared, workspace_id, c.statements)))
        progress.update(done)
    progress.finish()


def explain(bare, workspace_id: str, sql: str) -> str:
    with bare.transaction():
        bare.execute("SELECT set_config('tenex.workspace_id', %s, true)", [workspace_id])
        rows = bare.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").fetchall()
    return "\n".join(row[0] for row in rows)


def print_table(title: str, cases: list[Case]) -> None:
    print(f"\n{title}")
    width = max(len(c.name) for c in cases)
    second = all(c.unprepared_ms for c in cases)
    header = f"{'case':<{width}}  {'endpoint p50':>12} {'p99':>9}  {'bare SQL p50':>12} {'p99':>9}  {'ratio':>6}"
    if second:
        header += f"  {'unprepared p50':>14} {'p99':>9}  {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for case in cases:
        e50, b50 = statistics.median(case.endpoint_ms), statistics.median(case.baseline_ms)
        line = (f"{case.name:<{width}}  {e50:>9.2f} ms {percentile(case.endpoint_ms, 0.99):>9.2f}"
                f"  {b50:>9.2f} ms {percentile(case.baseline_ms, 0.99):>9.2f}  {e50 / b50:>5.1f}x")
        if second:
            u50 = statistics.median(case.unprepared_ms)
            line += f"  {u50:>11.2f} ms {percentile(case.unprepared_ms, 0.99):>9.2f}  {e50 / u50:>5.1f}x"
        print(line)


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port or 5432}"))


def main() -> None:
    args = parse_args()
    started_all = time.perf_counter()
    owner_url = bench_database_url(args)  # DATABASE_URL's server and role (tenex_owner by default)
    app_url, admin_url = with_user(owner_url, "tenex_app"), with_user(owner_url, "postgres")
    os.environ.setdefault("TENEX_DB_POOL", "false")
    setup_django(owner_url)
    import psycopg
    from django.core.management import call_command
    from django.db import connections
    from django.test import Client

    from workspaces.services import api_key_create, member_ensure, workspace_create

    call_command("migrate", verbosity=0, interactive=False)
    call_command("setup_database_roles", role="tenex_app", stdout=open(os.devnull, "w"))  # noqa: SIM115
    rng = random.Random(args.seed)
    main_ws = workspace_create(slug="bench", name="Benchmark")
    user = member_ensure(workspace=main_ws, email="owner@bench.test")
    plan = [(Workspace(main_ws.pk), args.threads, user.pk, RARE_COUNT)]
    for n in range(args.noise):
        noise = workspace_create(slug=f"noise{n}", name=f"Noise {n}")
        plan.append((Workspace(noise.pk), max(1, args.threads // 10), member_ensure(
            workspace=noise, email=f"owner@noise{n}.test").pk, RARE_COUNT))
    service_key = api_key_create(workspace=main_ws, name="bench").secret
    started = time.perf_counter()
    data_seed = rng.randrange(1 << 30)
    with psycopg.connect(admin_url) as admin:
        loaded = admin.execute("SELECT count(*) FROM chat_thread WHERE workspace_id = %s", [main_ws.pk]).fetchone()[0]
    if args.reuse and loaded == args.threads:
        regenerate(plan, data_seed)
    elif loaded:
        sys.exit(f"{args.database} holds {loaded:,} threads, not {args.threads:,}: run without --reuse")
    else:
        load(owner_url, plan, data_seed)
    messages = sum(count for _, count, _, _ in plan) * MESSAGES_PER_THREAD
    log(f"seeded  {messages:,} messages in {time.perf_counter() - started:.1f} s")

    # Serve as the plain application role, as production does.
    connections.close_all()
    connections["default"].settings_dict["USER"] = "tenex_app"
    workspace = plan[0][0]
    rare_thread = sorted(workspace.matches[RARE])[0]
    cases = [
        Case(f"common word '{COMMON}' ({len(workspace.matches[COMMON]):,} threads)", f"{URL}?q={COMMON}",
             first_page(workspace, COMMON)),
        Case(f"rare word '{RARE}' ({len(workspace.matches[RARE]):,} threads)", f"{URL}?q={RARE}",
             first_page(workspace, RARE)),
        Case(f"prefix '{PREFIX}' ({len(workspace.matches[PREFIX]):,} threads)", f"{URL}?q={PREFIX}",
             first_page(workspace, PREFIX)),
        Case("messages of one thread, q=" + COMMON, f"{URL}/{rare_thread}/messages?q={COMMON}", None),
    ]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {service_key}")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("ALTER FUNCTION ts_match_vq(tsvector, tsquery) NOT LEAKPROOF")  # PostgreSQL's default
    with psycopg.connect(app_url) as bare:
        for case in cases:
            capture(client, case)
        before = [Case(c.name, c.url, c.expected, statements=c.statements) for c in cases]
        measure(before, client, bare, workspace.id, args.before_requests, 1, "before ")
        before_plan = explain(bare, workspace.id, next(q for q in cases[1].statements if not q.startswith("EXPLAIN")))
    subprocess.run(
        [sys.executable, "manage.py", "enable_search_indexes"], cwd=ROOT, check=True,
        env={**os.environ, "DATABASE_URL": admin_url}, stdout=subprocess.DEVNULL,
    )
    # New connections: a plan prepared before (psycopg prepares a statement run five times) keeps
    # what it chose then, since PostgreSQL does not invalidate plans for a change to a built-in function.
    connections.close_all()
    with psycopg.connect(app_url) as bare, psycopg.connect(app_url, prepare_threshold=None) as unprepared:
        for case in cases:
            capture(client, case)
        measure(cases, client, bare, workspace.id, args.requests, args.warmup, "measure", unprepared)
        plans = {case.name: [explain(bare, workspace.id, sql) for sql in case.statements
                             if not sql.startswith("EXPLAIN")] for case in cases}  # the planner's estimates

    from django.db import connection

    print(f"GET {URL}?q=…: {args.threads * MESSAGES_PER_THREAD:,} messages in {args.threads:,} threads in the "
          f"measured workspace, {messages:,} in all ({args.noise} noise workspaces); as tenex_app under "
          f"row-level security; PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}")
    print_table(f"before: ts_match_vq not leakproof (PostgreSQL's default), {args.before_requests} requests per case",
                before)
    print_table(f"after `manage.py enable_search_indexes`: {args.requests} requests per case after "
                f"{args.warmup} warm-up, round-robin", cases)
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) before, {cases[1].name}, the page query:\n{before_plan}")
    for case in cases:
        for number, text in enumerate(plans[case.name], start=1):
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) after, {case.name}, statement {number} of {len(plans[case.name])}:")
            print(text)
    with psycopg.connect(app_url) as bare:
        sizes = bare.execute(
            "SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class WHERE relname IN "
            "('chat_message', 'chat_thread', 'chat_message_search', 'chat_thread_search') ORDER BY relname"
        ).fetchall()
    print("\nsizes: " + ", ".join(f"{name} {size}" for name, size in sizes))
    connections.close_all()
    if not args.keep:
        drop_database(owner_url)
        log(f"dropped {args.database}")
    log(f"total   {time.perf_counter() - started_all:.1f} s")


if __name__ == "__main__":
    main()
