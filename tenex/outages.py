"""How a failure that an outage explains is logged: one line, without its traceback.

A process logs many of them while PostgreSQL or Redis is unreachable (every retry of a sweep, a
checkpoint, a lease renewal, the cancel listener), and their tracebacks tell nothing the one line
does not. They would also cost memory for good: formatting a traceback reads the whole source of
every module in it into `linecache`, which keeps it for the life of the process. Any other failure
keeps its traceback.
"""

from __future__ import annotations

import logging


def outage_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable, restarting or failing-over PostgreSQL or Redis raises."""
    import psycopg
    from django.db import InterfaceError, OperationalError

    from tenex.redis_clients import STORE_ERRORS

    return (*STORE_ERRORS, OSError, OperationalError, InterfaceError, psycopg.OperationalError)


def log_failure(
    logger: logging.Logger, message: str, *args: object, exc: BaseException, level: int = logging.WARNING
) -> None:
    """`logger.log(level, message, *args)`: with the error in one line when an outage explains it,
    with its traceback otherwise."""
    if isinstance(exc, outage_errors()):
        logger.log(level, f"{message} (%r)", *args, exc)
    else:
        logger.log(level, message, *args, exc_info=exc)
