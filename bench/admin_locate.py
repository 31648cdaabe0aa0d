#!/usr/bin/env python
"""Benchmark the admin's object locator (`workspaces.locate`): finding which workspace holds an id.

Run from the project root with DATABASE_URL naming a PostgreSQL server and a role that may create
databases (default postgres://tenex_owner@127.0.0.1:5432/tenex):

    python bench/admin_locate.py                        # 1,000 and 10,000 workspaces
    python bench/admin_locate.py --workspaces 100000    # one size

It (re)creates a dedicated database (`tenex_bench_locate`), migrates it, adds workspaces with one
thread each, and times in one run, per size: the locator for the thread of the workspace scanned
last (the worst case), for an id no workspace holds (a miss, also a full scan), for the thread of
the workspace the caller already has set (the hint, what an admin object page passes), and the
baseline: one primary-key lookup with that workspace set, the query a page makes once its workspace
is known. Ratios are against that baseline. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgres://tenex_owner@127.0.0.1:5432/tenex"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, nargs="*", default=[1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per case (default 20)")
    parser.add_argument("--database", default="tenex_bench_locate")
    return parser.parse_args()


def database_url(name: str) -> tuple[str, str]:
    server = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL)
    return urlunsplit(server._replace(path="/postgres")), urlunsplit(server._replace(path=f"/{name}"))


def recreate(admin_url: str, url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SECRET_KEY": "bench-only", "TENEX_DB_POOL": "false"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True)


def seed(connection: psycopg.Connection, count: int) -> None:
    """`count` workspaces in all, one member and one thread each (threads under their own RLS setting)."""
    with connection.transaction():
        have = connection.execute("SELECT count(*) FROM workspaces_workspace").fetchone()[0]
        connection.execute(
            "INSERT INTO workspaces_user (id, password, is_superuser, email, name, is_staff, is_active, date_joined)"
            " VALUES ('usr_bench', '!', false, 'bench@example.com', '', false, true, now()) ON CONFLICT DO NOTHING"
        )
        for n in range(have, count):
            workspace = f"ws_bench{n:014d}"
            connection.execute(
                "INSERT INTO workspaces_workspace (id, slug, name, created_at) VALUES (%s, %s, %s, now())",
                [workspace, f"bench-{n}", f"Bench {n}"],
            )
            connection.execute("SELECT set_config('tenex.workspace_id', %s, true)", [workspace])
            connection.execute(
                "INSERT INTO chat_thread (id, workspace_id, user_id, title, title_is_auto, system_prompt,"
                " knowledge_document_ids, context, pinned, archived, message_count, metadata, created_at,"
                " updated_at, activity_at) VALUES (%s, %s, 'usr_bench', '', true, '', '[]', '{}', false, false,"
                " 0, '{}', now(), now(), now())",
                [f"thr_bench{n:014d}", workspace],
            )
    connection.execute("ANALYZE")


def timed(connection: psycopg.Connection, sql: str, params: list, repeat: int) -> tuple[float, object]:
    """Median milliseconds of `sql` run in its own transaction; and its answer."""
    samples, answer = [], None
    for _ in range(repeat + 2):
        started = time.perf_counter()
        with connection.transaction():
            answer = connection.execute(sql, params).fetchone()[0]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[2:]), answer


def main() -> None:
    args = parse_args()
    admin_url, url = database_url(args.database)
    recreate(admin_url, url, args.database)
    locate = "SELECT tenex_object_workspace('chat_thread'::regclass, 'id', %s, %s)"
    print(f"{'workspaces':>10}  {'case':<34} {'median ms':>10} {'x baseline':>10}")
    with psycopg.connect(url, autocommit=True) as connection:
        for count in sorted(args.workspaces):
            seed(connection, count)
            last = connection.execute(
                "SELECT id FROM workspaces_workspace ORDER BY ctid DESC LIMIT 1"
            ).fetchone()[0]
            target = last.replace("ws_bench", "thr_bench")
            baseline, found = timed(
                connection,
                "SELECT (SELECT set_config('tenex.workspace_id', %s, true)) IS NOT NULL"
                " AND EXISTS (SELECT 1 FROM chat_thread WHERE id = %s)",
                [last, target], args.repeat,
            )
            assert found is True
            cases = {
                "baseline: one lookup, workspace set": (baseline, last),
                "locate, hint is right": timed(connection, locate, [target, last], args.repeat),
                "locate, last workspace scanned": timed(connection, locate, [target, None], args.repeat),
                "locate, no workspace has it": timed(connection, locate, ["thr_nothing", None], args.repeat),
            }
            for label, (ms, answer) in cases.items():
                assert answer in (last, None) or answer is True
                print(f"{count:>10,}  {label:<34} {ms:>10.3f} {ms / baseline:>10.1f}")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
