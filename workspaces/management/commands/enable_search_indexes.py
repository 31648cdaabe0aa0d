from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from workspaces.checks import TEXT_MATCH_FUNCTION, text_match_is_leakproof


class Command(BaseCommand):
    help = (
        "Run once per database as a PostgreSQL superuser: mark `tsvector @@ tsquery` leakproof, so "
        "full-text search uses its GIN indexes under row-level security (see docs/scaling.md)."
    )

    def handle(self, **options):
        if connection.vendor != "postgresql":
            raise CommandError("enable_search_indexes is for PostgreSQL (DATABASE_URL)")
        if not text_match_is_leakproof(connection):
            with connection.cursor() as cursor:
                cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                if not cursor.fetchone()[0]:
                    raise CommandError(
                        "only a superuser may mark a function leakproof: run this command with DATABASE_URL "
                        f"naming a superuser, or run `ALTER FUNCTION {TEXT_MATCH_FUNCTION} LEAKPROOF` as one"
                    )
                cursor.execute(f"ALTER FUNCTION {TEXT_MATCH_FUNCTION} LEAKPROOF")
        self.stdout.write(
            f"{TEXT_MATCH_FUNCTION} is leakproof: search uses its GIN indexes under row-level security "
            "(restart the server processes: statements they prepared before keep their plans)"
        )
