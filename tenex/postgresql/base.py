"""Django's PostgreSQL backend with one change: a pooled connection is waited for in short slices,
each of which first asks the process's database breaker (`tenex.database_breaker`), so that a wait
begun just before an outage became known ends at once instead of after the whole pool timeout."""

from __future__ import annotations

from django.conf import settings
from django.db.backends.postgresql import base

from tenex.database_breaker import breaker


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        from workspaces.compat import connection_pool  # not at import: it loads Django's models

        pool = connection_pool(self)
        if pool is None:
            return super().get_new_connection(conn_params)
        breaker.watch(pool)
        return breaker.connect_within(
            lambda: super(DatabaseWrapper, self).get_new_connection(conn_params), settings.TENEX_DB_POOL_TIMEOUT
        )
