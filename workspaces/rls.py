"""Row-level security for tenant tables, as migration operations (PostgreSQL only; no-ops elsewhere)."""

from __future__ import annotations

from django.db import migrations

from workspaces.tenancy import RLS_SETTING

POLICY_NAME = "tenant_isolation"


def _policy_sql(table: str) -> list[str]:
    predicate = f"workspace_id = NULLIF(current_setting('{RLS_SETTING}', true), '')"
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'CREATE POLICY {POLICY_NAME} ON "{table}" USING ({predicate}) WITH CHECK ({predicate})',
    ]


def _drop_sql(table: str) -> list[str]:
    return [
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ]


def enable_rls(*tables: str) -> migrations.RunPython:
    """A migration operation that enables and forces RLS with the workspace policy on `tables`."""

    def forward(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for table in tables:
            for statement in _policy_sql(table):
                schema_editor.execute(statement)

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for table in tables:
            for statement in _drop_sql(table):
                schema_editor.execute(statement)

    return migrations.RunPython(forward, backward, elidable=False)


def tenant_tables() -> list[str]:
    """Every table of a model that carries workspace_id, except the identity tables."""
    from django.apps import apps

    exempt = {"workspaces_apikey", "workspaces_membership"}
    tables = []
    for model in apps.get_models():
        if model._meta.db_table in exempt or not model._meta.managed:
            continue
        if any(f.attname == "workspace_id" for f in model._meta.concrete_fields):
            tables.append(model._meta.db_table)
    return sorted(tables)
