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
        connection.close()  # the children open their own
        self.supervise(sockets, processes, [*(["--proxy-headers"] if proxy_headers else []), application],
                       f"http://{host}:{port}")

    def supervise(self, sockets: list[socket.socket], count: int, daphne_args: list[str], url: str) -> None:
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
            return subprocess.Popen(command, pass_fds=(fd,), process_group=0)

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
