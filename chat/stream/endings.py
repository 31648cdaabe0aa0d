"""Recording a reply's ending through a PostgreSQL outage.

The producer's final write is retried for up to TENEX_STREAM_DB_OUTAGE_SECONDS: a reply that
finished its text while the database was unreachable ends `complete` (or `cancelled`) when the
database returns within that bound, its readers pinging meanwhile. Past the bound the reply ends
`failed` with code `database_unavailable`, every word kept: the ending goes to the stream log at
once (its readers end, with the whole text), and the row is written when the database returns,
by the producer (`record_when_back`) or, should it die first, by whichever process ends the orphan
(the log's terminal event is then the outcome it records). Until then the producer keeps the
reply's lease alive in Redis, so that no process that reaches the database ends it `interrupted`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import InterfaceError, OperationalError

from tenex.database_breaker import breaker

logger = logging.getLogger(__name__)

OUTAGE_ERRORS = (OperationalError, InterfaceError)
RETRY_PAUSE_SECONDS = 0.5
DATABASE_UNAVAILABLE_ERROR = {
    "code": "database_unavailable",
    "message": "The database stayed unreachable after the reply was written; it ended with all its text.",
}


class OutageOutlasted(Exception):
    """The database stayed unreachable for longer than the bound."""


async def retry_through_outage(
    run_step: Callable[..., Awaitable[Any]], function: Callable, *args: Any, bound: float,
    pause: float = RETRY_PAUSE_SECONDS,
) -> Any:
    """`await run_step(function, *args)`, tried again while it fails for want of the database, for up
    to `bound` seconds from when the outage became known (the process's breaker opened, or this
    step first failed); then OutageOutlasted."""
    deadline: float | None = None
    while True:
        try:
            return await run_step(function, *args)
        except OUTAGE_ERRORS as exc:
            now = time.monotonic()
            if deadline is None:
                known_since = breaker.opened_at if breaker.open and breaker.opened_at is not None else now
                deadline = min(known_since, now) + bound
                logger.warning("a reply's ending waits for the database (%s)", exc)
            if now >= deadline:
                raise OutageOutlasted from exc
            await asyncio.sleep(min(pause, deadline - now))


async def record_when_back(
    run_step: Callable[..., Awaitable[Any]], function: Callable, *args: Any,
    keep_lease: Callable[[], Awaitable[None]], forget_lease: Callable[[], Awaitable[None]],
    pause: float = 1.0,
) -> None:
    """Write an ending the log already holds as soon as the database takes it, renewing the reply's
    lease meanwhile (so it is not taken for an orphan); the process's lifetime is the only bound."""
    while True:
        await keep_lease()
        try:
            await run_step(function, *args)
            break
        except OUTAGE_ERRORS:
            await asyncio.sleep(pause)
        except Exception:  # noqa: BLE001 - not an outage: the lease lapses and the sweep records it
            logger.exception("recording a reply's ending failed")
            return
    await forget_lease()
