"""Whether this process knows PostgreSQL to be unreachable, so that requests answer 503 at once.

Without it every request of an outage waits for a pooled connection (`TENEX_DB_POOL_TIMEOUT`) before
failing. A database error that may mean an outage (any `OperationalError` or `InterfaceError`)
starts a probe: one plain connection attempt, outside the pool. If it fails the breaker opens (the
database is known down) and the probe repeats every PROBE_SECONDS until a connection succeeds, which
closes it. A deadlock or a cancelled statement opens nothing: its probe connects at once.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

PROBE_SECONDS = 0.5
PROBE_CONNECT_TIMEOUT_SECONDS = 1


class DatabaseBreaker:
    """Process-wide and thread-safe; one probe thread at most, and only while an outage is suspected."""

    def __init__(self, probe=None):
        self._probe = probe or probe_database
        self._lock = threading.Lock()
        self._open = False
        self._probing = False
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

    def suspect(self) -> None:
        """A database step failed in a way an outage explains: probe now (in the background)."""
        if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
            return
        with self._lock:
            if self._probing:
                return
            self._probing = True
        threading.Thread(target=self._probe_until_reachable, name="tenex-db-probe", daemon=True).start()

    def _probe_until_reachable(self) -> None:
        try:
            while True:
                try:
                    self._probe()
                except Exception as exc:  # noqa: BLE001 - any failure to connect is an outage
                    if not self._open:
                        logger.warning("the database is unreachable (%s); answering 503 until it is back", exc)
                        self.opened_at = time.monotonic()
                        self._open = True
                    time.sleep(PROBE_SECONDS)
                    continue
                if self._open:
                    logger.warning("the database is reachable again")
                self._open = False
                return
        finally:
            with self._lock:
                self._probing = False


def probe_database() -> None:
    """One connection to the default database, outside the pool, and a `SELECT 1`; raises on failure."""
    import psycopg

    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db.get("PASSWORD") or None, host=db.get("HOST") or None,
        port=db.get("PORT") or None, connect_timeout=PROBE_CONNECT_TIMEOUT_SECONDS, autocommit=True,
    ) as connection:
        connection.execute("SELECT 1")


breaker = DatabaseBreaker()
