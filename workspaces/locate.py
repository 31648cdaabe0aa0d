"""Which workspace an object belongs to, for support staff who hold only its id.

Row-level security shows a tenant row only once its workspace is set, and nothing bypasses it. So on
PostgreSQL `tenex_object_workspace(table, pk column, id, hint)` does in the database what a staff
member would do by hand: set the hinted workspace (the one the admin session is in), then each
workspace in turn (`set_config(..., true)`, restored on return), and look the id up, stopping at the
first that shows it. It is a plain SECURITY INVOKER function under the
caller's role and the same policies: it can only answer for an id one already holds, and the cost
is one primary-key probe per workspace tried (`bench/admin_locate.py`). SQLite has no row-level
security: one lookup.
"""

from __future__ import annotations

from django.db import connection, migrations, models

from workspaces.tenancy import RLS_SETTING

FUNCTION = "tenex_object_workspace"

# The public-id tables get a static lookup, whose plan PL/pgSQL caches: several times cheaper per
# workspace than the dynamic one (re-planned each time) that serves any other table.
STATIC_TABLES = ("chat_thread", "chat_message", "chat_attachment", "chat_file", "knowledge_document", "agents_agent")


def _probe_each_workspace(lookup: str) -> str:
    """PL/pgSQL: run `lookup` (which sets `found`) in the hinted workspace, then in each other one."""
    return f"""
    IF hint IS NOT NULL THEN
      PERFORM set_config('{RLS_SETTING}', hint, true);
      {lookup}
    END IF;
    IF found IS NULL THEN
      FOR candidate IN SELECT id FROM workspaces_workspace WHERE id IS DISTINCT FROM hint LOOP
        PERFORM set_config('{RLS_SETTING}', candidate, true);
        {lookup}
        EXIT WHEN found IS NOT NULL;
      END LOOP;
    END IF;"""


_STATIC_BRANCHES = "".join(
    f"""
  {"IF" if n == 0 else "ELSIF"} tbl::text = '{table}' AND pk_column = 'id' THEN"""
    + _probe_each_workspace(f"SELECT workspace_id INTO found FROM {table} WHERE id = object_id;")
    for n, table in enumerate(STATIC_TABLES)
)

CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(tbl regclass, pk_column text, object_id text, hint text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  previous text := current_setting('{RLS_SETTING}', true);
  dynamic_lookup text := format('SELECT workspace_id FROM %s WHERE %I = $1', tbl, pk_column);
  candidate text;
  found text;
BEGIN{_STATIC_BRANCHES}
  ELSE{_probe_each_workspace("EXECUTE dynamic_lookup INTO found USING object_id;")}
  END IF;
  PERFORM set_config('{RLS_SETTING}', coalesce(previous, ''), true);
  RETURN found;
END
$$
"""
DROP_FUNCTION = f"DROP FUNCTION IF EXISTS {FUNCTION}(regclass, text, text, text)"


def create_locator() -> migrations.RunPython:
    def forward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(CREATE_FUNCTION, params=None)  # no placeholders: %I, %s are format()'s

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(DROP_FUNCTION)

    return migrations.RunPython(forward, backward, elidable=False)


def is_tenant_model(model: type[models.Model]) -> bool:
    return any(field.attname == "workspace_id" for field in model._meta.concrete_fields)


def object_workspace_id(model: type[models.Model], pk: str, *, hint: str | None = None) -> str | None:
    """The workspace of `model`'s row `pk`, whatever workspace (if any) is set now; None if none has it.

    `hint` is the workspace tried first. Only models with a text primary key (the public ids) are located.
    """
    pk_field = model._meta.pk
    if not is_tenant_model(model) or not isinstance(pk_field, models.CharField) or len(pk) > pk_field.max_length:
        return None
    if connection.vendor != "postgresql":
        return model._base_manager.filter(pk=pk).values_list("workspace_id", flat=True).first()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {FUNCTION}(%s::regclass, %s, %s, %s)", [model._meta.db_table, pk_field.column, pk, hint]
        )
        return cursor.fetchone()[0]
