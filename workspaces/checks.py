"""System checks: warn when the database role would bypass row-level security, when full-text
search cannot use its indexes under it, or when the connection pool is smaller than the threads
that may each hold one of its connections."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.db import connections


@register(Tags.database)
def check_role_respects_rls(app_configs=None, databases=None, **kwargs):
    problems = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            row = cursor.fetchone()
        if row and (row[0] or row[1]):
            problems.append(
                Warning(
                    "The database role is a superuser or has BYPASSRLS: row-level security will not "
                    "isolate workspaces for this connection.",
                    hint="Connect as a plain role (see `manage.py setup_database_roles`); run migrations as the owner.",
                    id="tenex.W001",
                )
            )
    return problems


# `tsvector @@ tsquery`: under row-level security only leakproof operators may use an index, and
# PostgreSQL does not mark this one leakproof (no GIN operator is); see docs/scaling.md.
TEXT_MATCH_FUNCTION = "pg_catalog.ts_match_vq(tsvector, tsquery)"


def text_match_is_leakproof(connection) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT proleakproof FROM pg_proc WHERE oid = %s::regprocedure", [TEXT_MATCH_FUNCTION])
        return bool(cursor.fetchone()[0])


@register(Tags.database)
def check_search_can_use_its_indexes(app_configs=None, databases=None, **kwargs):
    problems = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor == "postgresql" and not text_match_is_leakproof(connection):
            problems.append(
                Warning(
                    "Full-text search (threads, messages, knowledge) cannot use its GIN indexes under "
                    "row-level security: each search reads every row of the workspace.",
                    hint="As a PostgreSQL superuser, run `manage.py enable_search_indexes` once per database.",
                    id="tenex.W003",
                )
            )
    return problems


@register()
def check_pool_fits_the_threads(app_configs=None, **kwargs):
    return pool_size_warnings(settings.DATABASES["default"].get("OPTIONS", {}).get("pool"), settings.DATABASE_THREADS)


def pool_size_warnings(pool, threads: int) -> list[Warning]:
    """tenex.W002 when a connection pool (its OPTIONS["pool"]) is smaller than `threads`."""
    if not isinstance(pool, dict) or pool.get("max_size") is None or pool["max_size"] >= threads:
        return []
    return [
        Warning(
            f"TENEX_DB_POOL_MAX ({pool['max_size']}) is below the {threads} threads that may each hold a "
            "database connection: under load a request can wait for one and answer 503.",
            hint="Raise TENEX_DB_POOL_MAX, or lower TENEX_REQUEST_THREADS (or the other *_THREADS settings); "
            "unset, the pool is sized to fit.",
            id="tenex.W002",
        )
    ]
