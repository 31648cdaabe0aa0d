"""Row-level security on every tenant table: what raw SQL sees with and without a workspace set.

Every model whose table `workspaces.rls.tenant_tables()` lists is seeded generically (one row per
workspace, required fields filled by type), so a new tenant table is covered without editing this
file. A table whose rows cannot be built generically stays empty and is only checked for its policy.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from io import StringIO

import psycopg
import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import DatabaseError, ProgrammingError, connection, models, transaction
from django.utils import timezone

from workspaces.checks import check_role_respects_rls
from workspaces.models import User, Workspace
from workspaces.rls import tenant_tables
from workspaces.tenancy import RLS_SETTING, database_workspace, tenant_context

# The chat tables exist today; they must always be seeded, so these tests cannot pass on empty tables.
ALWAYS_SEEDED = {"chat_thread", "chat_message", "chat_attachment", "chat_file", "chat_idempotencyrecord"}
POLICY_REFUSAL = "row-level security"
BASE_DIR = django_settings.BASE_DIR


# --- seeding ------------------------------------------------------------------------------------
def _required_value(field: models.Field, workspace: Workspace, user: User, made: dict[type, models.Model]):
    """A value for one field, or None to leave it to its default; raises LookupError if not yet possible."""
    if field.is_relation:
        related = field.related_model
        if related is Workspace:
            return workspace
        if related is User:
            return user
        if related in made:
            return made[related]
        if field.null:
            return None
        raise LookupError(related)
    if field.has_default() or field.null or field.primary_key:
        return None
    if field.choices:
        return field.choices[0][0]
    if isinstance(field, models.DateTimeField):
        return timezone.now() + dt.timedelta(days=1)
    if isinstance(field, models.DateField):
        return timezone.now().date()
    if isinstance(field, (models.IntegerField, models.FloatField, models.DecimalField)):
        return 1
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.EmailField):
        return f"seed@{workspace.slug}.test"
    if isinstance(field, models.URLField):
        return f"https://{workspace.slug}.test/"
    if isinstance(field, (models.CharField, models.TextField, models.FileField)):
        return f"{field.name}-{workspace.slug}"[: field.max_length or 200]
    raise LookupError(type(field))


def seed_tenant_rows(workspace: Workspace, user: User) -> set[str]:
    """One row in every tenant table this can build, inside the workspace's RLS context."""
    tables = set(tenant_tables())
    pending = [m for m in apps.get_models() if m._meta.db_table in tables]
    made: dict[type, models.Model] = {}
    with tenant_context(workspace.pk):
        while pending:
            progress = False
            for model in list(pending):
                try:
                    values = {
                        f.name: value
                        for f in model._meta.concrete_fields
                        if (value := _required_value(f, workspace, user, made)) is not None
                    }
                except LookupError:
                    continue  # waits for a related row (or cannot be built generically)
                pending.remove(model)
                progress = True
                try:
                    with transaction.atomic():
                        made[model] = model.objects.create(**values)
                except DatabaseError:
                    pass  # a table still being built by someone else; its policy is still checked
            if not progress:
                break
    return {model._meta.db_table for model in made}


@pytest.fixture
def seeded(workspace, other_workspace, alice, outsider) -> set[str]:
    tables = seed_tenant_rows(workspace, alice.user) & seed_tenant_rows(other_workspace, outsider.user)
    assert ALWAYS_SEEDED <= tables, ALWAYS_SEEDED - tables
    return tables


def _counts(cursor, table: str, workspace_id: str) -> tuple[int, int]:
    """(rows visible, of which in workspace_id)."""
    cursor.execute(
        f'SELECT count(*), count(*) FILTER (WHERE workspace_id = %s) FROM "{table}"', [workspace_id]
    )
    return cursor.fetchone()


# --- the app's own connection -------------------------------------------------------------------
@pytest.mark.django_db
def test_no_workspace_set_means_no_rows_in_any_tenant_table(seeded):
    assert database_workspace() is None
    with connection.cursor() as cursor:
        for table in tenant_tables():
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            assert cursor.fetchone()[0] == 0, table


@pytest.mark.django_db
def test_a_set_workspace_sees_only_its_own_rows(seeded, workspace, other_workspace):
    for current, other in ((workspace, other_workspace), (other_workspace, workspace)):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, true)", [RLS_SETTING, current.pk])
            for table in seeded:
                visible, own = _counts(cursor, table, current.pk)
                assert visible == own >= 1, (table, visible, own)
                cursor.execute(f'SELECT count(*) FROM "{table}" WHERE workspace_id = %s', [other.pk])
                assert cursor.fetchone()[0] == 0, table


@pytest.mark.django_db
def test_moving_rows_to_another_workspace_is_refused(seeded, workspace, other_workspace):
    with tenant_context(workspace.pk), connection.cursor() as cursor:
        for table in seeded:
            with pytest.raises(ProgrammingError, match=POLICY_REFUSAL), transaction.atomic():
                cursor.execute(f'UPDATE "{table}" SET workspace_id = %s', [other_workspace.pk])


@pytest.mark.django_db
def test_inserting_a_row_of_another_workspace_is_refused(workspace, other_workspace, outsider):
    from chat.models import Thread

    with tenant_context(workspace.pk), pytest.raises(ProgrammingError, match=POLICY_REFUSAL), transaction.atomic():
        Thread.objects.create(workspace=other_workspace, user=outsider.user, title="smuggled")
    with tenant_context(other_workspace.pk):
        assert not Thread.objects.filter(title="smuggled").exists()


@pytest.mark.django_db
def test_every_tenant_table_forces_rls_with_the_workspace_policy():
    tables = tenant_tables()
    assert ALWAYS_SEEDED <= set(tables)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY(%s)",
            [tables],
        )
        flags = {name: (enabled, forced) for name, enabled, forced in cursor.fetchall()}
        cursor.execute(
            "SELECT tablename, qual, with_check FROM pg_policies "
            "WHERE schemaname = current_schema() AND tablename = ANY(%s)",
            [tables],
        )
        policies: dict[str, list[tuple[str, str]]] = {}
        for table, qual, with_check in cursor.fetchall():
            policies.setdefault(table, []).append((qual or "", with_check or ""))
    for table in tables:
        assert flags.get(table) == (True, True), (table, flags.get(table))
        assert any(RLS_SETTING in qual and RLS_SETTING in check for qual, check in policies.get(table, [])), table


@pytest.mark.django_db
def test_every_table_with_workspace_id_is_a_tenant_table_or_an_identity_table():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'workspace_id'"
        )
        with_column = {row[0] for row in cursor.fetchall()}
    assert with_column - {"workspaces_apikey", "workspaces_membership"} == set(tenant_tables())


# --- the plain application role -----------------------------------------------------------------
def _connect_as(role: str) -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or None, port=settings["PORT"] or None, dbname=settings["NAME"], user=role,
        autocommit=True,
    )


@pytest.mark.django_db(transaction=True)
def test_plain_app_role_sees_a_workspace_only_when_it_is_set(seeded, workspace, other_workspace):
    out = StringIO()
    call_command("setup_database_roles", "--role", "tenex_app", stdout=out)
    assert out.getvalue().strip().startswith("role tenex_app can use")
    with _connect_as("tenex_app") as app:
        row = app.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (False, False)
        for table in tenant_tables():
            assert app.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == 0, table
        with app.transaction():
            app.execute("SELECT set_config(%s, %s, true)", [RLS_SETTING, workspace.pk])
            for table in seeded:
                visible, own = app.execute(
                    f'SELECT count(*), count(*) FILTER (WHERE workspace_id = %s) FROM "{table}"', [workspace.pk]
                ).fetchone()
                assert visible == own >= 1, (table, visible, own)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=POLICY_REFUSAL), app.transaction():
            app.execute("SELECT set_config(%s, %s, true)", [RLS_SETTING, workspace.pk])
            app.execute("UPDATE chat_thread SET workspace_id = %s", [other_workspace.pk])
        # The setting lived only as long as its transaction.
        assert app.execute("SELECT count(*) FROM chat_thread").fetchone()[0] == 0


# --- the system check ---------------------------------------------------------------------------
def _manage_check_as(role: str) -> subprocess.CompletedProcess:
    """`manage.py check --database default` against the test database, connected as `role`."""
    settings = connection.settings_dict
    url = f"postgres://{role}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "TENEX_DB_POOL": "false", "TENEX_TESTING": "1"}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        check=False, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.django_db
def test_check_warns_when_the_role_bypasses_rls():
    result = _manage_check_as("postgres")
    assert "tenex.W001" in result.stderr, (result.stdout, result.stderr)
    assert "row-level security will not isolate workspaces" in result.stderr


@pytest.mark.django_db
def test_check_is_silent_for_the_table_owner_role():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == "tenex_owner"
    assert check_role_respects_rls(databases=["default"]) == []
    result = _manage_check_as("tenex_owner")
    assert result.returncode == 0 and "tenex.W001" not in result.stdout + result.stderr, result.stderr
