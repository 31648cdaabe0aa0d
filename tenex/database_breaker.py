"""Whether this process knows PostgreSQL to be unreachable, so that requests answer 503 at once.

The breaker opens as soon as the process has evidence of an outage: its connection pool failed to
open a connection (the pool's `reconnect_failed`, after an immediate second try), or a probe failed.
A probe (one plain connection attempt, outside the pool) starts whenever a database error that may
mean an outage occurs (any `OperationalError` or `InterfaceError`) or a wait for a pooled
connection outlasts a slice; while the breaker is open it repeats every PROBE_SECONDS until a
connection succeeds, which closes the breaker. A deadlock or a cancelled statement opens nothing:
its probe connects at once.

While the breaker is open, nothing waits for PostgreSQL: requests answer 503 (tenex.middleware),
database steps and new connections are refused at once. The pool does not retry in the background
meanwhile (`reconnect_timeout` 0: its backoff would stretch to the outage's length and delay the
first connection after it); the breaker's probe watches the server instead, and when it is back
the next request grows the pool at once.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

PROBE_SECONDS = 0.25
# How long one wait for a pooled connection lasts before it looks at the breaker again (the pool's
# own `timeout`; TENEX_DB_POOL_TIMEOUT bounds the waits together).
WAIT_SLICE_SECONDS = 0.25


def _unreachable():
    import psycopg

    return psycopg.OperationalError("The database is unreachable.")


class DatabaseBreaker:
    """Process-wide and thread-safe; one probe thread at most, and only while an outage is suspected."""

    def __init__(self, probe: Callable[[], None] | None = None):
        self._probe = probe or probe_database
        self._lock = threading.Lock()
        self._open = False
        self._probing = False
        self._pools: weakref.WeakSet = weakref.WeakSet()
        self.opened_at: float | None = None

    @property
    def open(self) -> bool:
        """The database is known unreachable: do not wait for a connection."""
        return self._open

    def call(self, function, *args):
        """Run a database step: refused at once while the breaker is open; a failure that may mean
        an outage starts the probe."""
        from django.db import InterfaceError, OperationalError

        if self._open:
            raise OperationalError("The database is unreachable.")
        try:
            return function(*args)
        except (OperationalError, InterfaceError):
            self.suspect()
            raise

    def watch(self, pool) -> None:
        """A connection pool whose idle connections are dropped when the breaker opens (they are
        dead, and each would cost its next user a failed check)."""
        self._pools.add(pool)

    def connect_within(self, get_connection: Callable[[], Any], seconds: float) -> Any:
        """`get_connection()` (a pooled connection, which waits at most a slice), tried again for up
        to `seconds` while the breaker stays closed; refused at once while it is open."""
        from psycopg_pool import PoolTimeout

        deadline = time.monotonic() + seconds
        while True:
            if self._open:
                raise _unreachable()
            try:
                return get_connection()
            except PoolTimeout:
                self.suspect()  # a wait this long: is the server there? (answered in the background)
                if time.monotonic() >= deadline:
                    raise

    def reconnect_failed(self, pool=None) -> None:
        """The pool could not open a connection (psycopg_pool's `reconnect_failed` callback): the
        database is unreachable now."""
        self._open_now("the pool could not connect")

    def suspect(self) -> None:
        """A database step failed in a way an outage explains: probe now (in the background)."""
        if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
            return
        with self._lock:
            if self._probing:
                return
            self._probing = True
        threading.Thread(target=self._probe_until_reachable, name="tenex-db-probe", daemon=True).start()

    def _open_now(self, reason: object) -> None:
        with self._lock:
            opening = not self._open
            if opening:
                self.opened_at = time.monotonic()
                self._open = True
        if opening:
            logger.warning("the database is unreachable (%s); answering 503 until it is back", reason)
            for pool in list(self._pools):
                pool.drain()  # its idle connections are dead; its waiting clients look at the breaker
        self.suspect()  # the probe closes the breaker again

    def _probe_until_reachable(self) -> None:
        while True:
            try:
                self._probe()
            except Exception as exc:  # noqa: BLE001 - any failure to connect is an outage
                self._open_now(exc)
                time.sleep(PROBE_SECONDS)
                continue
            except BaseException:
                with self._lock:
                    self._probing = False
                raise
            # Closing and ending the probe at once: a failure reported after this starts a new probe.
            with self._lock:
                closing, self._open, self._probing = self._open, False, False
            if closing:
                logger.warning("the database is reachable again")
            return


def probe_database() -> None:
    """One connection to the default database, outside the pool, and a `SELECT 1`; raises on failure."""
    import psycopg

    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db.get("PASSWORD") or None, host=db.get("HOST") or None,
        port=db.get("PORT") or None, connect_timeout=settings.TENEX_DB_CONNECT_TIMEOUT, autocommit=True,
    ) as connection:
        connection.execute("SELECT 1")


breaker = DatabaseBreaker()
