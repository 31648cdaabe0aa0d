from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from psycopg import sql

from workspaces.rls import tenant_tables


class Command(BaseCommand):
    help = (
        "Run as the table owner after `migrate`: create (if needed) the plain application role and "
        "grant it data access, so the app connects as a role that row-level security applies to."
    )

    def add_arguments(self, parser):
        parser.add_argument("--role", default="tenex_app")
        parser.add_argument("--password", default=None)

    def handle(self, role, password, **options):
        if connection.vendor != "postgresql":
            raise CommandError("setup_database_roles is for PostgreSQL (DATABASE_URL)")
        ident = sql.Identifier(role)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if cursor.fetchone() is None:
                statement = sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
                ).format(ident)
                if password:
                    statement = statement + sql.SQL(" PASSWORD {}").format(sql.Literal(password))
                cursor.execute(statement)
            elif password:
                cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
            cursor.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(connection.settings_dict["NAME"]), ident
                )
            )
            cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
            cursor.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(ident)
            )
            cursor.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident))
            cursor.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
                ).format(ident)
            )
            cursor.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}"
                ).format(ident)
            )
            cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
            superuser, bypass = cursor.fetchone()
        if superuser or bypass:
            raise CommandError(f"role {role} is a superuser or has BYPASSRLS: row-level security would not apply")
        self.stdout.write(f"role {role} can use {len(tenant_tables())} tenant tables under row-level security")
