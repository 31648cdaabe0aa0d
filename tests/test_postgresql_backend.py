"""tenex.postgresql's `timestamptz` loader: psycopg's C parser, Django's result."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format

from tenex.postgresql.base import TzLoader

pytestmark = pytest.mark.django_db
VALUES = [
    "2026-12-06 15:51:00.123456+00", "2026-12-06 15:51:00+05:30", "1999-12-31 23:59:59.999999-08",
    "0999-01-02 03:04:05.000006+00", "9999-12-31 23:59:59.999999+00", "2024-02-29 12:00:00.5+01:00:30",
]
SQL = "SELECT " + ", ".join(f"'{value}'::timestamptz" for value in VALUES) + ", NULL::timestamptz"


def test_timestamps_load_through_psycopgs_parser_as_djangos_loader_loads_them():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(connection.connection.adapters.types["timestamptz"].oid,
                                                       Format.TEXT)
    assert issubclass(loader, TzLoader) and loader.timezone is connection.timezone
    with connection.cursor() as cursor:
        cursor.execute(SQL)
        ours = cursor.fetchone()
    with connection.connection.cursor() as raw:
        register_tzloader(connection.timezone, raw)  # Django's own loader, on this cursor only
        djangos = raw.execute(SQL).fetchone()
    assert ours == djangos and ours[0] == datetime(2026, 12, 6, 15, 51, 0, 123456, tzinfo=UTC)
    assert all(value.tzinfo is connection.timezone for value in ours[:-1]) and ours[-1] is None
