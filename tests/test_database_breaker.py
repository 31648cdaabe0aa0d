"""The database breaker's own rules, with a probe the test controls (the real one, against a cut
PostgreSQL, is in tests/chat/test_stream_outages.py)."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from tenex.database_breaker import DatabaseBreaker


class Server:
    """Whether the probe connects."""

    def __init__(self) -> None:
        self.up = False
        self.probes = 0

    def probe(self) -> None:
        self.probes += 1
        if not self.up:
            raise psycopg.OperationalError("connection refused")


def wait_until(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_failed_pool_connection_opens_it_at_once_and_a_probe_closes_it():
    server = Server()
    breaker = DatabaseBreaker(probe=server.probe)
    breaker.reconnect_failed()
    assert breaker.open and breaker.opened_at is not None
    asked = []
    with pytest.raises(psycopg.OperationalError):
        breaker.connect_within(lambda: asked.append(1), 10)
    assert asked == []  # refused without waiting for the pool
    wait_until(lambda: server.probes >= 2)  # the probe repeats while the server is down
    assert breaker.open
    server.up = True
    wait_until(lambda: not breaker.open, seconds=2)
    assert breaker.connect_within(lambda: "connection", 10) == "connection"


def test_a_wait_that_outlasts_a_slice_asks_the_server_and_ends_when_it_is_down():
    """A pooled wait is sliced: a slice that times out starts a probe; once the probe has found the
    server down, the next slice raises at once, long before the pool's timeout."""
    server = Server()
    breaker = DatabaseBreaker(probe=server.probe)
    slices = []

    def pool_wait():
        slices.append(time.monotonic())
        time.sleep(0.05)
        raise PoolTimeout("no connection in time")

    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        breaker.connect_within(pool_wait, 30)
    assert time.monotonic() - started < 5 and slices and server.probes >= 1 and breaker.open
    server.up = True  # the probe thread ends
    wait_until(lambda: not breaker.open)


def test_a_healthy_server_slow_to_give_a_connection_is_waited_for_up_to_the_timeout():
    server = Server()
    server.up = True
    breaker = DatabaseBreaker(probe=server.probe)
    attempts = []

    def pool_wait():
        attempts.append(1)
        if len(attempts) < 4:
            raise PoolTimeout("no connection in time")
        return "connection"

    assert breaker.connect_within(pool_wait, 10) == "connection"
    assert not breaker.open and len(attempts) == 4
    with pytest.raises(PoolTimeout):
        breaker.connect_within(lambda: (_ for _ in ()).throw(PoolTimeout("none")), 0)

