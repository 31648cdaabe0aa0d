"""Real processes for the tests that need them: daphne servers, a private Redis, and a TCP proxy in
front of PostgreSQL that a test can cut and restore (an outage without stopping the server)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

from tests.helpers import free_port
from tests.tcp_proxy import PostgresProxy  # noqa: F401 - one place to import the test processes from

ROOT = Path(__file__).resolve().parents[1]
LEASE_SECONDS = 2


def server_env(database_name: str, database_port: int | None = None) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    port = database_port or db["PORT"] or 5432
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{port}/{database_name}",
        REDIS_URL=settings.REDIS_URL,
        TENEX_REDIS_PREFIX=settings.TENEX_REDIS_PREFIX,  # this run's processes share their leases
        DJANGO_SECRET_KEY="test-secret-key-for-daphne-processes",
        DJANGO_DEBUG="false",
        TENEX_STREAM_LEASE_SECONDS=str(LEASE_SECONDS),
        TENEX_SWEEP_SECONDS="1",
        TENEX_LOCAL_TOKEN_DELAY_MS="30",
        TENEX_TESTING="0",
    )
    return env


def wait_until_healthy(base: str, process: subprocess.Popen, seconds: float, name: str) -> None:
    """Until `base`/healthz answers 200; RuntimeError with the tail of its log if `process` exits or
    `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start: {process.log_path.read_text()[-3000:]}")
        time.sleep(0.1)


@contextmanager
def daphne_process(database_port: int | None = None, **env: str):
    """A daphne process serving tenex on the test database (`env` overrides its settings; through
    `database_port` when given, e.g. a `PostgresProxy`); yields its base URL and the process."""
    port = free_port()
    # stderr to a file, not a pipe nobody reads: a chatty server must never block on a full pipe.
    log = tempfile.NamedTemporaryFile(prefix="tenex-test-daphne-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "tenex.asgi:application"],
        cwd=ROOT, env={**server_env(connection.settings_dict["NAME"], database_port), **env},
        stdout=subprocess.DEVNULL, stderr=log,
    )
    process.log_path = Path(log.name)  # what it wrote to stderr, for tests that read it
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process, 30, "daphne")
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)  # it lets its replies finish first (TENEX_SHUTDOWN_DRAIN_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        os.unlink(log.name)


def start_redis(port: int, directory: str) -> subprocess.Popen:
    """A private, empty Redis on `port` (no persistence), answering when this returns."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return process
        assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)


def stop_redis(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(10)


@contextmanager
def redis_server(port: int, directory: str):
    """A private, empty Redis on `port` (no persistence), stopped on exit."""
    process = start_redis(port, directory)
    try:
        yield process
    finally:
        stop_redis(process)
