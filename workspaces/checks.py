"""System checks: warn when the database role would bypass row-level security."""

from __future__ import annotations

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
