"""Django's PostgreSQL backend with two changes.

- A pooled connection is waited for in short slices, each of which first asks the process's
  database breaker (`tenex.database_breaker`), so that a wait begun just before an outage became
  known ends at once instead of after the whole pool timeout.
- `timestamptz` values are parsed by psycopg's C loader (psycopg-binary), not by the pure-Python
  one Django's loader subclasses; the result is Django's, field for field.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.db.backends.postgresql import base
from psycopg import adapt, adapters
from psycopg.pq import Format

from tenex.database_breaker import breaker

# psycopg's own loader: the C one when psycopg-binary (or psycopg-c) is installed. Django's loader
# subclasses the pure-Python one, and a C type takes no subclass: the loader below holds one.
_TIMESTAMPTZ_OID = adapters.types["timestamptz"].oid
_PSYCOPG_TZ_LOADER = adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)


class TzLoader(adapt.Loader):
    """What Django's `timestamptz` loader does (psycopg parses, the result gets `timezone`, the
    connection's), with psycopg's registered loader parsing."""

    timezone = None  # set per connection time zone; Django compares it with its own on each cursor

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        self._parse = _PSYCOPG_TZ_LOADER(oid, context).load

    def load(self, data):
        return self._parse(data).replace(tzinfo=self.timezone)


@lru_cache
def _with_tz_loader(context: adapt.AdaptersMap, timezone) -> adapt.AdaptersMap:
    """Django's adapters for a connection (one map per setting of USE_TZ and TIME_ZONE), with
    `TzLoader` for `timestamptz`."""
    ours = adapt.AdaptersMap(context)
    loader = type("ConnectionTzLoader", (TzLoader,), {"timezone": timezone, "__module__": __name__})
    ours.register_loader("timestamptz", loader)
    return ours


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        if "context" in params:
            params["context"] = _with_tz_loader(params["context"], self.timezone)
        return params

    def get_new_connection(self, conn_params):
        from workspaces.compat import connection_pool  # not at import: it loads Django's models

        pool = connection_pool(self)
        if pool is None:
            return super().get_new_connection(conn_params)
        breaker.watch(pool)
        return breaker.connect_within(
            lambda: super(DatabaseWrapper, self).get_new_connection(conn_params), settings.TENEX_DB_POOL_TIMEOUT
        )
