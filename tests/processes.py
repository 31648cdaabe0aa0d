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


def cluster_ports(count: int) -> list[int]:
    """`count` free loopback ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


class RedisCluster:
    """A private Redis Cluster on loopback ports (see `redis_cluster`)."""

    def __init__(self, directory: str, masters: int, replicas: int):
        self.directory = directory
        self.ports = cluster_ports(masters * (1 + replicas))
        self.masters, self.replicas = masters, replicas
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """The cluster as REDIS_URL names it: two of its nodes (the client learns the others)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:2])

    def node(self, port: int):
        import redis

        return redis.Redis(port=port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        for port in self.ports:
            self.wait_for(lambda port=port: self.node(port).ping(), f"redis-server on {port} did not start")
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )
        self.wait_until_ok()

    def wait_until_ok(self) -> None:
        """Until every live node says the cluster is ok, knows every node, and every replica is in sync."""

        def ok() -> bool:
            for port, process in self.processes.items():
                if process.poll() is not None:
                    continue
                node = self.node(port)
                info = node.execute_command("CLUSTER INFO")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(self.ports):
                    return False
                replication = node.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
            return True

        self.wait_for(ok, "the Redis Cluster did not become ok")

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot."""
        any_port = next(port for port, process in self.processes.items() if process.poll() is None)
        slot = self.node(any_port).execute_command("CLUSTER KEYSLOT", key)
        for start, end, master, *_replicas in self.node(any_port).execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"no master serves slot {slot}")

    def replica_of(self, master_port: int) -> int:
        for port, process in self.processes.items():
            if process.poll() is None and self.node(port).info("replication").get("master_port") == master_port:
                return port
        raise AssertionError(f"{master_port} has no replica")

    def start_node(self, port: int) -> None:
        """Start (again) the node on `port`, with the cluster configuration it kept."""
        self.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"{self.directory}/nodes-{port}.conf", "--cluster-node-timeout", "1000",
             "--repl-diskless-sync-delay", "0", "--save", "", "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL,
        )

    def kill_node(self, port: int) -> None:
        """SIGKILL the node on `port` (no goodbye to the cluster, as a crashed machine)."""
        self.processes[port].kill()
        self.processes[port].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    @staticmethod
    def wait_for(check, message: str, seconds: float = 30) -> None:
        """Until `check()` is true (its errors count as false); AssertionError after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(Exception):
                if check():
                    return
            assert time.monotonic() < deadline, message
            time.sleep(0.1)


@contextmanager
def redis_cluster(directory: str, masters: int = 3, replicas: int = 1):
    """A private, empty Redis Cluster (`masters` masters with `replicas` replicas each, no
    persistence, failing a silent node over after a second) on free loopback ports, stopped on exit."""
    cluster = RedisCluster(directory, masters, replicas)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
