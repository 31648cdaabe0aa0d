"""Serve tenex with N daphne processes on one port: every core of one machine.

The parent binds the port and hands each daphne child a listening socket with `--fd`; it never
accepts a connection itself. Where the platform has SO_REUSEPORT (Linux), each child gets its own
socket bound to the port, so the kernel spreads new connections evenly across the children and a
child that is restarting keeps its share queued on its socket; elsewhere the children share one
socket. SIGTERM (or SIGINT) is passed to every child, and each drains its replies as a single
daphne process does (TENEX_SHUTDOWN_DRAIN_SECONDS); the parent exits once all have. A child that
dies on its own is restarted.

Replies are produced by the process that received the message and read by any: that needs
PostgreSQL and Redis, so the embedded default (SQLite, in-process stream store) is refused.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

RESTART_WINDOW_SECONDS = 10.0
RESTARTS_PER_WINDOW = 5  # a child that keeps dying at start is a configuration error, not a blip
# Connections left to everything but the children: migrations, a psql session, the breaker's probes.
CONNECTION_HEADROOM = 5


def connection_slots() -> int:
    """The connections PostgreSQL accepts from a role that is not a superuser."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
            " - COALESCE(NULLIF(current_setting('reserved_connections', true), ''), '0')::int"
        )
        return cursor.fetchone()[0]


def pool_share(slots: int, processes: int, wanted: int) -> int | None:
    """The pool size each of `processes` may grow to so that together they stay within `slots` (less
    the headroom); None when `wanted` already does. Past the server's limit a new connection is
    refused, which the database breaker must take for an outage: every request would answer 503."""
    share = max(1, (slots - CONNECTION_HEADROOM) // processes)
    return None if wanted <= share else share


def children_env(environ: dict[str, str], processes: int, pool_max: int | None, slots: int) -> tuple[dict, str]:
    """The children's environment and what to tell the operator: TENEX_DB_POOL_MAX lowered when the
    processes' pools at `pool_max` (None: unpooled) would together pass PostgreSQL's `slots`; an
    operator's own TENEX_DB_POOL_MAX is kept, with a warning."""
    share = None if pool_max is None else pool_share(slots, processes, pool_max)
    if share is None:
        return environ, ""
    exceed = f"{processes} processes x {pool_max} pooled connections exceed the {slots} PostgreSQL accepts"
    if "TENEX_DB_POOL_MAX" in environ:
        return environ, f"warning: {exceed} (TENEX_DB_POOL_MAX); raise max_connections or lower it"
    return {**environ, "TENEX_DB_POOL_MAX": str(share)}, f"{exceed}: each process pools at most {share}"


def listening_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """`count` sockets listening on host:port (one each with SO_REUSEPORT, else one shared)."""
    reuse_port = hasattr(socket, "SO_REUSEPORT")
    sockets = []
    for _ in range(count if reuse_port else 1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


class Command(BaseCommand):
    help = (
        "Serve with N daphne processes on one port (needs DATABASE_URL naming PostgreSQL and REDIS_URL). "
        "SIGTERM drains every process."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--processes", type=int, default=os.cpu_count() or 1, help="daphne processes (default: one per core)"
        )
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="IPv4 address to bind")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--backlog", type=int, default=2048, help="listen backlog per socket")
        parser.add_argument("--proxy-headers", action="store_true", help="passed to daphne: trust X-Forwarded-*")
        parser.add_argument("--application", default="tenex.asgi:application", help="the ASGI application to serve")

    def handle(self, processes, host, port, backlog, proxy_headers, application, **options):
        if connection.vendor != "postgresql" or not settings.REDIS_URL:
            raise CommandError(
                "several processes need PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): the embedded "
                "default's SQLite file and in-process stream store belong to one process; run scripts/serve"
            )
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        if ":" in host:
            raise CommandError("--host must be an IPv4 address (daphne adopts IPv4 sockets only)")
        try:
            sockets = listening_sockets(host, port, processes, backlog)
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error}") from None
        pool = settings.DATABASES["default"]["OPTIONS"].get("pool")
        child_env, notice = children_env(
            dict(os.environ), processes, pool["max_size"] if isinstance(pool, dict) else None, connection_slots()
        )
        if notice:
            self.stderr.write(notice)
        connection.close()  # the children open their own
        self.supervise(sockets, processes, [*(["--proxy-headers"] if proxy_headers else []), application],
                       f"http://{host}:{port}", child_env)

    def supervise(
        self, sockets: list[socket.socket], count: int, daphne_args: list[str], url: str, env: dict[str, str]
    ) -> None:
        stopping = gave_up = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        def start(slot: int) -> subprocess.Popen:
            fd = sockets[slot % len(sockets)].fileno()
            # Its own process group: a terminal's Ctrl-C reaches the parent alone, which passes on
            # one SIGTERM (a second signal would cut a child's drain short).
            command = [sys.executable, "-m", "daphne", "--fd", str(fd), *daphne_args]
            return subprocess.Popen(command, pass_fds=(fd,), process_group=0, env=env)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        children = {slot: start(slot) for slot in range(count)}
        pids = ", ".join(str(child.pid) for child in children.values())
        self.stdout.write(f"serving {url} with {count} daphne processes (pids {pids})", ending="\n")
        self.stdout.flush()
        restarts: list[float] = []
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            slot = next((s for s, child in children.items() if child.pid == pid), None)
            if slot is None:
                continue
            children[slot].returncode = os.waitstatus_to_exitcode(status)
            if stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
            if len(restarts) > RESTARTS_PER_WINDOW:
                self.stderr.write(f"daphne processes keep exiting ({len(restarts)} in {RESTART_WINDOW_SECONDS:.0f} s)")
                gave_up = True
                stop(signal.SIGTERM, None)
                continue
            self.stderr.write(f"daphne process {pid} exited with status {children[slot].returncode}: restarting it")
            children[slot] = start(slot)
        if gave_up:
            raise CommandError("stopped: the daphne processes could not stay up (see their output above)")
        self.stdout.write("stopped: every daphne process drained and exited")
