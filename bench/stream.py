"""Streaming benchmark: tenex replies through daphne on PostgreSQL + Redis against floors measured in
the same run, under the same daphne.

    .venv/bin/python bench/stream.py [--concurrency 50,200] [--duration 20] [--slow-streams 1000]
                                     [--skip-rss] [--keep]                       # per reply, 0 ms
    .venv/bin/python bench/stream.py --paced [--delay-ms 20] [--concurrency 50,200,400]
    .venv/bin/python bench/stream.py --provider openai,anthropic [--concurrency 50,200]

The floors:
- relay (bench/bare_sse_app.py): one captured tenex reply replayed from memory, byte for byte; paced,
  one event per --delay-ms after the first delta.
- durable (bench/durable_floor_app.py): a bare ASGI app on psycopg's async pool and redis.asyncio
  doing the contract's durable work per reply (key by its hash, the send transaction under RLS, the
  tool's ranked full-text search, events in Redis, checkpoints once a second, the final
  transaction), batched across replies; it answers the same bytes per reply as tenex (checked and
  printed at start).
- provider relay (bench/provider_relay_app.py): reads the provider's stream with a lean client and
  forwards each delta as SSE (provider mode).

What it does, all in one run on this machine:
1. Creates a dedicated database (`tenex_bench_stream`, owned by tenex_owner; dropped and recreated
   unless --keep), migrates it as the owner, grants the plain `tenex_app` role (every server
   connects as that role, so row-level security applies as in production), creates a workspace and a
   personal key, and FLUSHes a dedicated Redis DB (redis://127.0.0.1:6379/14).
2. Starts tenex under daphne (local provider, TENEX_LOCAL_TOKEN_DELAY_MS=0), seeds three knowledge
   documents sized so the fixed question gets a ~130-word reply, and captures that reply's exact
   SSE bytes and headers.
3. Per reply (default): the relay and durable floors at 0 ms, then for each concurrency N workers,
   each on its own thread, repeatedly POST a message with `Accept: text/event-stream` and read the
   stream to the end. After a warm-up it counts events delivered per second and, per request sent
   inside the window, the time from sending to the first `delta` event (TTFD), split into response
   head / first event / first delta. The window lasts --duration seconds, or longer (up to
   --max-duration) until there is one TTFD sample per worker. Ratios: events/s tenex/bare and
   tenex/durable; server-added TTFD = tenex - bare.
   With --processes N, N tenex and N bare processes serve the workers (worker i talks to process
   i mod N; CPU is their sum), the way several processes per host would behind a load balancer;
   with --one-port too, each server is `manage.py serve --processes N` on one port (the kernel
   spreads the workers' connections over its daphne children; CPU is the parent's and theirs).
4. RSS per open stream: a fresh tenex daphne with a 2 s token delay; VmRSS after 20 warm-up
   streams, then after --slow-streams more (opened 50 at a time, each batch waiting for every first
   delta) and what holding them costs for 10 s. The same for the bare app pausing 2 s per event.
5. --paced: tenex (TENEX_LOCAL_TOKEN_DELAY_MS=--delay-ms), the relay and the durable floor paced
   alike; worker i starts i/N of one reply's length late, so arrivals are spread. Per server and
   level: events/s delivered vs asked (streams x words/s), daphne CPU (process CPU seconds / wall),
   time to first event p50/p99, gap between consecutive words p50/p99; then the issue's targets at
   200 streams (tenex/relay events/s, gap p99 above the relay's, first event above the durable
   floor's) and the same figures at the other levels.
6. --provider: bench/wire_provider.py in its own process (OpenAI and Anthropic wire formats, a tool
   call round then one word per chunk --delay-ms apart, its CPU printed beside each phase), tenex
   with TENEX_LLM_PROVIDER set to each provider (the official SDK) beside the provider relay, with
   the same table and ratios against the relay.

The load generator is a minimal HTTP/1.1 client on asyncio streams (keep-alive, chunked decoding,
SSE block counting): it costs a fraction of httpx's CPU per event, so on a small machine the
floor is not capped by the client. `--client httpx` uses httpx.AsyncClient instead.
Exit status is 0 whenever the measurement ran (a missed target is a result, not a failure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
THREADS = "/api/v1/chat/threads"
QUESTION = "What is the Aurora launch plan for pricing, channels and support?"
DOC_TITLES = ("Aurora launch plan — pricing", "Aurora launch plan — channels", "Aurora launch plan — support")
VOCAB_TEXT = (
    "the aurora launch plan keeps pricing simple with three tiers while channels and support teams "
    "share one calendar so every customer hears the same story at the same time and nobody waits "
    "for answers about discounts trials renewals or onboarding sessions"
)
VOCAB = VOCAB_TEXT.split()
DROP_HEADERS = {"transfer-encoding", "server", "date", "connection", "content-length", "keep-alive"}

TARGET_EVENTS_RATIO = 0.35
TARGET_TTFD_ADDED_MS = 20.0
TARGET_RSS_KIB = 64.0


# --- small helpers ------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_cpu_seconds() -> dict[int, float]:
    """CPU seconds of every postgres and redis-server process, by pid (shared with anything else)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name.startswith(("postgres", "redis-server")):
            found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def service_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the services used between two samples (processes that came or went count from 0)."""
    return sum(max(0.0, seconds - before.get(pid, 0.0)) for pid, seconds in after.items())


def machine_busy_seconds() -> float:
    """CPU seconds (all cores) the whole machine spent not idle, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(cmd, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


# --- the database and Redis -----------------------------------------------------------------------
@dataclass
class Infra:
    pg_host: str
    pg_port: int
    pg_admin: str
    db_name: str
    redis_url: str
    keep: bool

    def psql(self, sql: str, database: str = "postgres") -> str:
        return run(["psql", "-h", self.pg_host, "-p", str(self.pg_port), "-U", self.pg_admin, "-d", database,
                    "-v", "ON_ERROR_STOP=1", "-qtA"], stdin=sql)

    def url(self, role: str) -> str:
        return f"postgres://{role}@{self.pg_host}:{self.pg_port}/{self.db_name}"

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "TENEX_", "DJANGO_"))}
        env.update(
            DATABASE_URL=self.url("tenex_app"),
            REDIS_URL=self.redis_url,
            DJANGO_SECRET_KEY="bench-stream-secret-key-not-for-production",
            DJANGO_DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            TENEX_RATE_LIMIT="1000000/min",
            TENEX_LOCAL_TOKEN_DELAY_MS="0",
            TENEX_LLM_PROVIDER="local",
            TENEX_TESTING="0",
            PYTHONUNBUFFERED="1",
        )
        return env

    def prepare(self) -> bool:
        """Roles, database, migrations, grants; True when an existing database was kept."""
        self.psql(
            """DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenex_owner') THEN
                CREATE ROLE tenex_owner LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS; END IF;
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenex_app') THEN
                CREATE ROLE tenex_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; END IF;
            END $$;"""
        )
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.db_name}'").strip() == "1"
        if exists and self.keep:
            log(f"keeping database {self.db_name}")
        else:
            self.psql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            self.psql(f'CREATE DATABASE "{self.db_name}" OWNER tenex_owner')
        owner_env = {**self.base_env(), "DATABASE_URL": self.url("tenex_owner"), "TENEX_DB_POOL": "false"}
        run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env=owner_env)
        run([PYTHON, "manage.py", "setup_database_roles", "--role", "tenex_app"], env=owner_env)
        return exists and self.keep

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.close()

    def api_key(self) -> str:
        owner_env = {**self.base_env(), "DATABASE_URL": self.url("tenex_owner"), "TENEX_DB_POOL": "false"}
        run([PYTHON, "manage.py", "create_workspace", "bench-stream", "--name", "Bench stream"], env=owner_env)
        out = run([PYTHON, "manage.py", "create_api_key", "bench-stream", "--user", "bench-stream@example.com",
                   "--name", "bench"], env=owner_env)
        return out.strip().splitlines()[-1]

    def connections(self) -> int:
        out = self.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{self.db_name}'")
        return int(out.strip() or 0)

    def redis_clients(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return int(client.info("clients")["connected_clients"])
        finally:
            client.close()

    def streaming_replies(self) -> int:
        """Replies still being generated (as superuser, which row-level security does not filter)."""
        out = self.psql("SELECT count(*) FROM chat_message WHERE status = 'streaming'", database=self.db_name)
        return int(out.strip() or 0)

    def wait_until_idle(self, timeout: float) -> int:
        """Let abandoned generations finish before the next measurement; returns how many remain."""
        deadline = time.monotonic() + timeout
        while (remaining := self.streaming_replies()) and time.monotonic() < deadline:
            time.sleep(1)
        return remaining

    def commits(self) -> int:
        out = self.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{self.db_name}'")
        return int(out.strip() or 0)

    def redis_command_calls(self) -> dict[str, int]:
        """Server-wide call counts per command (INFO commandstats)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    def drop(self) -> None:
        if not self.keep:
            self.psql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


# --- servers --------------------------------------------------------------------------------------
class Daphne:
    """One daphne process in its own process group, stderr to a file."""

    def __init__(self, label: str, app: str, env: dict[str, str], workdir: Path, one_port_processes: int = 0):
        self.label = label
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stderr_path = workdir / f"daphne-{label}.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), app]
        if one_port_processes:  # `manage.py serve`: a parent holding the port, N daphne children behind it
            command = [PYTHON, "manage.py", "serve", "--processes", str(one_port_processes),
                       "--port", str(self.port), "--application", app]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr,
            start_new_session=True,  # its own process group, so stop() ends it and nothing else
        )  # it inherits the raised open-files limit (main() calls raise_nofile() first)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """The process and its children (the daphne processes behind `manage.py serve`)."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            children = []
        return [self.pid, *map(int, children)]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne {self.label} did not start:\n{self.stderr_tail()}")
            time.sleep(0.1)

    def stderr_tail(self, chars: int = 4000) -> str:
        self._stderr.flush()
        return self.stderr_path.read_bytes()[-chars:].decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                for pid in self.pids[1:]:  # `manage.py serve`'s children have process groups of their own
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(10)
        self._stderr.close()


# --- the load generator ---------------------------------------------------------------------------
class SSECounter:
    """Counts SSE events (blocks with a data line) as bytes arrive; notes the first `delta`."""

    __slots__ = ("buffer", "events", "first_delta_at", "first_event_at", "gaps", "headers_at", "last_delta_at", "tap",
                 "terminal", "window")

    def __init__(self, window: Window | None = None, tap: Callable[[bytes, SSECounter], None] | None = None):
        self.tap = tap  # sees every chunk after it was counted
        self.buffer = b""
        self.headers_at: float | None = None  # when the response head arrived
        self.events = 0
        self.first_event_at: float | None = None
        self.first_delta_at: float | None = None
        self.last_delta_at: float | None = None
        # Per delta inside the window, the seconds since the previous read that brought deltas (the
        # window's list, shared by every counter of a phase): every word of a burst that ends a stall
        # waited through that stall, so bunched words cannot hide one.
        self.gaps = window.gaps if window is not None else None
        self.terminal: str | None = None
        self.window = window

    def feed(self, data: bytes, now: float) -> None:
        buffer = self.buffer + data
        start = 0
        new = 0
        deltas = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            marker = block.find(b"\nevent: ")
            if marker < 0 or b"\ndata: " not in block:
                continue  # retry hint, ping comment
            new += 1
            if self.first_event_at is None:
                self.first_event_at = now
            kind = block[marker + 8 : block.find(b"\n", marker + 1)]
            if kind == b"delta":
                if self.first_delta_at is None:
                    self.first_delta_at = self.last_delta_at = now
                else:
                    deltas += 1
            elif kind in (b"done", b"error"):
                self.terminal = kind.decode()
        self.buffer = buffer[start:]
        if deltas:
            if self.gaps is not None and self.window.holds(now):
                self.gaps.extend([now - self.last_delta_at] * deltas)
            self.last_delta_at = now
        if new:
            self.events += new
            if self.window is not None:
                self.window.count(new, now)
        if self.tap is not None:
            self.tap(data, self)


@dataclass
class Window:
    """The measured interval; `end` stays infinite until the phase closes it."""

    start: float
    end: float = float("inf")
    events: int = 0
    gaps: list[float] = field(default_factory=list)

    def count(self, n: int, now: float) -> None:
        if self.start <= now <= self.end:
            self.events += n

    def holds(self, at: float) -> bool:
        return self.start <= at <= self.end


class HttpError(Exception):
    pass


class RawClient:
    """One keep-alive HTTP/1.1 connection; POSTs and reads a chunked (or sized) body.

    It reads whatever the socket has (up to 256 KiB) and decodes every complete chunk in it, so a
    burst of events costs one read and one feed rather than two awaits per event.
    """

    def __init__(self, host: str, port: int, key: str, timeout: float):
        self.host, self.port, self.key, self.timeout = host, port, key, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buffer = bytearray()
        self.last_raw_headers: list[tuple[str, str]] = []

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass
        self.reader = self.writer = None
        self.buffer = bytearray()

    async def _fill(self, stage: str = "body") -> float:
        assert self.reader is not None
        try:
            data = await asyncio.wait_for(self.reader.read(262144), self.timeout)
        except TimeoutError:
            raise HttpError(f"no bytes for {self.timeout:g} s while reading the {stage}") from None
        if not data:
            raise HttpError(f"connection closed by the server while reading the {stage}")
        self.buffer += data
        return time.perf_counter()

    async def post_stream(self, path: str, body: bytes, counter: SSECounter) -> tuple[int, dict[str, str], bytes]:
        """Send; feed a 200's body to `counter`; return status, headers and (for non-200) the body."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.buffer = bytearray()
        writer = self.writer
        writer.write(
            (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {self.key}\r\n"
             f"Accept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
             ).encode() + body
        )
        await writer.drain()
        buffer = self.buffer
        now = time.perf_counter()
        while (head_end := buffer.find(b"\r\n\r\n")) < 0:
            now = await self._fill("response head")
        lines = buffer[:head_end].decode("latin-1").split("\r\n")
        del buffer[: head_end + 4]
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        raw_headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            raw_headers.append((name.strip(), value.strip()))
        self.last_raw_headers = raw_headers
        counter.headers_at = now
        kept = bytearray()

        def deliver(data: bytes, at: float) -> None:
            if status == 200:
                counter.feed(data, at)
            else:
                kept.extend(data)

        if headers.get("transfer-encoding", "").lower() == "chunked":
            finished = False
            while True:
                pieces = []
                pos = 0
                while True:
                    line_end = buffer.find(b"\r\n", pos)
                    if line_end < 0:
                        break
                    size = int(bytes(buffer[pos:line_end]).split(b";", 1)[0].strip(), 16)
                    if size == 0:  # last chunk, no trailers: CRLF CRLF
                        if len(buffer) < line_end + 4:
                            break
                        pos = line_end + 4
                        finished = True
                        break
                    data_end = line_end + 2 + size
                    if len(buffer) < data_end + 2:
                        break
                    pieces.append(bytes(buffer[line_end + 2 : data_end]))
                    pos = data_end + 2
                del buffer[:pos]
                if pieces:
                    deliver(b"".join(pieces), now)
                if finished:
                    break
                now = await self._fill()
        elif "content-length" in headers:
            length = int(headers["content-length"])
            while len(buffer) < length:
                now = await self._fill()
            deliver(bytes(buffer[:length]), now)
            del buffer[:length]
        else:
            while True:
                if buffer:
                    deliver(bytes(buffer), now)
                    buffer.clear()
                try:
                    now = await self._fill()
                except HttpError:
                    break
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, bytes(kept)


class HttpxClient:
    """The same request through httpx.AsyncClient (one client per worker, keep-alive)."""

    def __init__(self, base: str, key: str, timeout: float):
        self.client = httpx.AsyncClient(base_url=base, timeout=timeout, headers={"Authorization": f"Bearer {key}"})

    async def close(self) -> None:
        await self.client.aclose()

    async def post_stream(self, path: str, body: bytes, counter: SSECounter) -> tuple[int, dict[str, str], bytes]:
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        async with self.client.stream("POST", path, content=body, headers=headers) as response:
            counter.headers_at = time.perf_counter()
            if response.status_code != 200:
                return response.status_code, dict(response.headers), await response.aread()
            async for chunk in response.aiter_raw():
                counter.feed(chunk, time.perf_counter())
            return 200, dict(response.headers), b""


@dataclass
class Target:
    label: str
    servers: list[Daphne]  # worker i talks to servers[i % len(servers)]
    key: str
    paths: list[str]  # one per worker: each worker posts to its own thread


@dataclass
class Sample:
    """One request: when it was sent and, relative to that, when its head, first event and first delta came."""

    sent: float
    headers: float | None = None
    first_event: float | None = None
    first_delta: float | None = None
    events: int = 0
    ok: bool = False
    finished: bool = False


@dataclass
class PhaseResult:
    label: str
    concurrency: int
    duration: float = 0.0  # the measured window, seconds
    events_in_window: int = 0
    samples: list[Sample] = field(default_factory=list)  # requests sent inside the window
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    services_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine (all cores), for context
    redis_calls: dict[str, int] = field(default_factory=dict)  # server-wide, during the window
    drained: bool = True
    gaps: list[float] = field(default_factory=list)  # seconds between consecutive deltas of a stream
    extra_cpu: dict[str, float] = field(default_factory=dict)  # other processes of the run (the provider)

    def first_event_ms(self) -> list[float]:
        return [s.first_event * 1000 for s in self.samples if s.first_event is not None]

    def gap_ms(self) -> list[float]:
        return [gap * 1000 for gap in self.gaps]

    def cpu_ms_per_reply(self) -> float:
        return self.server_cpu * self.duration * 1000 / self.replies if self.replies else float("nan")

    @property
    def events_per_s(self) -> float:
        return self.events_in_window / self.duration if self.duration else float("nan")

    def ttfd_ms(self) -> list[float]:
        return [s.first_delta * 1000 for s in self.samples if s.first_delta is not None]

    def part_ms(self, name: str) -> list[float]:
        """p50 parts of TTFD: head (request -> response head), start (head -> first event), tool (-> first delta)."""
        values = []
        for s in self.samples:
            if s.first_delta is None or s.headers is None or s.first_event is None:
                continue
            if name == "head":
                values.append(s.headers * 1000)
            elif name == "start":
                values.append((s.first_event - s.headers) * 1000)
            else:
                values.append((s.first_delta - s.first_event) * 1000)
        return values

    @property
    def replies(self) -> int:
        return sum(1 for s in self.samples if s.ok)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if s.finished and not s.ok)

    def events_per_reply(self) -> float:
        ok = [s.events for s in self.samples if s.ok]
        return statistics.mean(ok) if ok else float("nan")


def make_client(kind: str, server: Daphne, key: str, timeout: float):
    if kind == "httpx":
        return HttpxClient(server.base, key, timeout)
    return RawClient("127.0.0.1", server.port, key, timeout)


async def load_phase(target: Target, concurrency: int, warmup: float, duration: float, client_kind: str,
                     redis_calls: Callable[[], dict[str, int]] | None = None, max_duration: float = 60.0,
                     drain_timeout: float = 120.0, request_timeout: float = 35.0, spread: float = 0.0,
                     extra_pids: dict[str, int] | None = None) -> PhaseResult:
    """N workers post and read streams back to back. The window opens after `warmup` and closes after
    `duration`, or later (up to `max_duration`) until `concurrency` requests sent inside it have had
    their first delta, so a slow server still yields one TTFD sample per worker. Workers then finish
    the request in hand (their TTFD counts when it was sent inside the window) and stop. With
    `spread`, worker i starts i * spread / concurrency seconds late, so paced replies do not tick
    together; `extra_pids` are processes whose CPU is reported beside the server's."""
    result = PhaseResult(target.label, concurrency)
    body = json.dumps({"content": QUESTION}).encode()
    start = time.perf_counter()
    window = Window(start + warmup)
    closed = asyncio.Event()
    in_window: list[Sample] = []
    first_deltas = 0

    def note_error(name: str) -> None:
        result.errors[name] = result.errors.get(name, 0) + 1

    async def worker(index: int) -> None:
        nonlocal first_deltas
        client = make_client(client_kind, target.servers[index % len(target.servers)], target.key, request_timeout)
        path = target.paths[index]
        await asyncio.sleep(index * spread / concurrency)
        try:
            while not closed.is_set():
                sample = Sample(sent=time.perf_counter())
                counted = window.holds(sample.sent)
                if counted:
                    in_window.append(sample)

                def tap(_data: bytes, counter: SSECounter, sample: Sample = sample, counted: bool = counted) -> None:
                    nonlocal first_deltas
                    if sample.first_delta is None and counter.first_delta_at is not None:
                        sample.first_delta = counter.first_delta_at - sample.sent
                        if counted:
                            first_deltas += 1

                counter = SSECounter(window, tap)
                try:
                    status, _headers, raw = await client.post_stream(path, body, counter)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, HttpError, httpx.HTTPError,
                        ValueError) as exc:
                    await client.close()
                    where = "before any event" if counter.events == 0 else "after some events"
                    note_error(f"{type(exc).__name__}: {str(exc)[:120]} ({where})")
                    sample.finished, sample.events = True, counter.events
                    await asyncio.sleep(0.1)
                    continue
                sample.finished, sample.events = True, counter.events
                sample.ok = status == 200 and counter.terminal == "done"
                if counter.headers_at is not None:
                    sample.headers = counter.headers_at - sample.sent
                if counter.first_event_at is not None:
                    sample.first_event = counter.first_event_at - sample.sent
                if status != 200:
                    note_error(f"HTTP {status}: {raw[:160].decode(errors='replace')}")
                elif counter.terminal != "done":
                    note_error(f"stream ended with {counter.terminal or 'no terminal event (cut off)'}")
        finally:
            await client.close()

    pids = [pid for server in target.servers for pid in server.pids]
    extra_pids = extra_pids or {}

    def mark_cpu() -> tuple[float, float, dict[int, float], float, dict[str, float]]:
        server_cpu = sum(cpu_seconds(pid) for pid in pids)
        extra = {name: cpu_seconds(pid) for name, pid in extra_pids.items()}
        return server_cpu, time.process_time(), service_cpu_seconds(), machine_busy_seconds(), extra

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    cpu0 = mark_cpu()
    calls0 = redis_calls() if redis_calls else {}
    min_end, max_end = window.start + duration, window.start + max(duration, max_duration)
    while True:
        now = time.perf_counter()
        if now >= max_end or (now >= min_end and first_deltas >= concurrency):
            break
        await asyncio.sleep(0.05)
    window.end = time.perf_counter()
    closed.set()
    cpu1 = mark_cpu()
    calls1 = redis_calls() if redis_calls else {}
    result.duration = window.end - window.start
    result.server_cpu = (cpu1[0] - cpu0[0]) / result.duration
    result.client_cpu = (cpu1[1] - cpu0[1]) / result.duration
    result.services_cpu = service_cpu_delta(cpu0[2], cpu1[2]) / result.duration
    result.machine_cpu = (cpu1[3] - cpu0[3]) / result.duration
    result.extra_cpu = {name: (cpu1[4][name] - cpu0[4][name]) / result.duration for name in extra_pids}
    result.gaps = window.gaps
    result.redis_calls = {k: v - calls0.get(k, 0) for k, v in calls1.items() if v - calls0.get(k, 0) > 0}
    result.events_in_window = window.events
    done, pending = await asyncio.wait(tasks, timeout=drain_timeout)
    if pending:
        result.drained = False
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            note_error(f"worker crashed: {task.exception()!r}"[:200])
    result.samples = [s for s in in_window if window.holds(s.sent)]
    unfinished = sum(1 for s in result.samples if not s.finished)
    if unfinished:
        note_error(f"{unfinished} requests still open after the {drain_timeout:.0f} s drain (cancelled)")
    return result


# --- setup through the API ------------------------------------------------------------------------
def passage_text(words: int, offset: int) -> str:
    chosen = [VOCAB[(offset + i) % len(VOCAB)] for i in range(words)]
    return (" ".join(chosen)).capitalize() + "."


def passage_words_for(target_words: int) -> int:
    topic = " ".join(QUESTION.split())
    header = f"Here is what your knowledge base says about “{topic}”:"
    overhead = len(header.split()) + sum(len(f"From “{title}”: “".split()) for title in DOC_TITLES)
    return max(5, round((target_words - overhead) / len(DOC_TITLES)))


async def api_calls(base: str, key: str, calls: list[tuple[str, str, dict]], concurrency: int = 16) -> list[dict]:
    """Run JSON API calls with bounded concurrency; every one must succeed."""
    results: list[dict] = [{}] * len(calls)
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:

        async def one(index: int, method: str, path: str, payload: dict) -> None:
            async with semaphore:
                response = await client.request(method, path, json=payload)
                if response.status_code >= 300:
                    raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
                results[index] = response.json()

        await asyncio.gather(*(one(i, *call) for i, call in enumerate(calls)))
    return results


async def create_threads(server: Daphne, key: str, count: int, label: str) -> list[str]:
    made = await api_calls(server.base, key, [("POST", THREADS, {"title": f"bench {label} {i}"}) for i in range(count)])
    return [f"{THREADS}/{thread['id']}/messages" for thread in made]


async def seed_knowledge(server: Daphne, key: str, target_words: int) -> int:
    per_passage = passage_words_for(target_words)
    await api_calls(server.base, key, [
        ("POST", "/api/v1/knowledge/documents", {"title": title, "body": passage_text(per_passage, 7 * i)})
        for i, title in enumerate(DOC_TITLES)
    ], concurrency=1)
    return per_passage


async def capture_reply(server: Daphne, key: str, path: str | None = None,
                        ) -> tuple[list[tuple[str, str]], list[bytes], dict]:
    """One real reply: response headers (minus hop-by-hop and daphne's own) and its SSE blocks; on a
    new thread of `server` unless `path` names one (a floor's reply on a thread tenex created)."""
    if path is None:
        [path] = await create_threads(server, key, 1, "capture")
    client = RawClient("127.0.0.1", server.port, key, 60)
    raw = bytearray()
    counter = SSECounter(tap=lambda data, _counter: raw.extend(data))
    try:
        status, _headers, body = await client.post_stream(path, json.dumps({"content": QUESTION}).encode(), counter)
        headers = [(n, v) for n, v in client.last_raw_headers if n.lower() not in DROP_HEADERS]
    finally:
        await client.close()
    if status != 200 or counter.terminal != "done":
        raise RuntimeError(f"capture failed: HTTP {status} terminal={counter.terminal} {bytes(body)[:500]!r}")
    data = bytes(raw)
    blocks = [block + b"\n\n" for block in data.split(b"\n\n")[:-1]]
    assert b"".join(blocks) == data, "captured stream does not end on an event boundary"
    events = []
    for block in blocks:
        for line in block.decode().split("\n"):
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    content = "".join(e["delta"] for e in events if e["type"] == "delta")
    info = {
        "bytes": len(data),
        "events": len(events),
        "deltas": sum(1 for e in events if e["type"] == "delta"),
        "words": len(content.split()),
        "tool_calls": sum(1 for e in events if e["type"] == "tool_call"),
        "final_content_matches": events[-1]["type"] == "done" and events[-1]["message"]["content"] == content,
    }
    return headers, blocks, info


# --- RSS per open stream --------------------------------------------------------------------------
@dataclass
class RssResult:
    label: str
    before_kib: int = 0
    after_kib: int = 0
    opened: int = 0
    wanted: int = 0
    failed: int = 0
    ramp_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    pg_connections: int | None = None
    redis_clients_before: int | None = None
    redis_clients_after: int | None = None
    hold_seconds: float = 0.0
    hold_cpu: float = 0.0  # the daphne's CPU while holding every stream open (1.0 = one core)
    hold_commits_per_s: float | None = None
    hold_redis_per_s: float | None = None
    ended_early: int = 0  # streams that ended (done/error/cut) before the measurement finished

    @property
    def per_stream_kib(self) -> float:
        return (self.after_kib - self.before_kib) / self.opened if self.opened else float("nan")


async def hold_streams(server: Daphne, key: str, paths: list[str], batch: int, first_timeout: float,
                       stop: asyncio.Event, errors: dict[str, int]) -> tuple[list[asyncio.Task], int, int]:
    """Open one stream per path in batches, each batch waiting for every first delta; keep reading."""
    body = json.dumps({"content": QUESTION}).encode()
    tasks: list[asyncio.Task] = []
    opened = failed = 0

    async def one(path: str, ready: asyncio.Future, counter: SSECounter) -> None:
        client = RawClient("127.0.0.1", server.port, key, 3600)
        try:
            reading = asyncio.create_task(client.post_stream(path, body, counter))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reading.done():
                exc = reading.exception()
                if exc is not None:
                    raise exc
                status, _h, raw = reading.result()
                if not ready.done():
                    ready.set_exception(HttpError(f"HTTP {status} ended before a delta: {raw[:160]!r}"))
                else:
                    ended = f"open stream ended early: {counter.terminal or 'cut off without done/error'}"
                    errors[ended] = errors.get(ended, 0) + 1
            for task in (reading, stopping):
                task.cancel()
            await asyncio.gather(reading, stopping, return_exceptions=True)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            if not ready.done():
                ready.set_exception(HttpError(f"{type(exc).__name__}: {str(exc)[:160]}"))
            else:
                ended = f"open stream failed: {type(exc).__name__}: {str(exc)[:120]}"
                errors[ended] = errors.get(ended, 0) + 1
        finally:
            await client.close()

    loop = asyncio.get_running_loop()
    bad_batches = 0
    for first in range(0, len(paths), batch):
        readies = []
        counters = []
        for path in paths[first : first + batch]:
            ready = loop.create_future()

            def tap(_data: bytes, counter: SSECounter, ready: asyncio.Future = ready) -> None:
                if counter.first_delta_at is not None and not ready.done():
                    ready.set_result(True)

            counter = SSECounter(tap=tap)
            readies.append(ready)
            counters.append(counter)
            tasks.append(asyncio.create_task(one(path, ready, counter)))
        done, _pending = await asyncio.wait(readies, timeout=first_timeout)
        batch_failed = 0
        for future, counter in zip(readies, counters, strict=True):
            if future in done and future.exception() is None:
                opened += 1
                continue
            batch_failed += 1
            if future in done:
                reason = str(future.exception())
            elif counter.headers_at is None:
                reason = f"no response head within {first_timeout:.0f} s"
            else:
                reason = f"head and {counter.events} events but no delta within {first_timeout:.0f} s"
            errors[reason[:200]] = errors.get(reason[:200], 0) + 1
        failed += batch_failed
        # Two batches in a row with half their streams failing: the server has stopped taking
        # streams; going on would only add timeouts.
        bad_batches = bad_batches + 1 if batch_failed * 2 >= len(readies) else 0
        if bad_batches >= 2 and first + batch < len(paths):
            skipped = len(paths) - first - batch
            errors[f"ramp stopped after two failing batches ({skipped} streams not attempted)"] = 1
            break
    return tasks, opened, failed


def sample_rss(pid: int, times: int = 3, gap: float = 0.5) -> int:
    values = []
    for i in range(times):
        if i:
            time.sleep(gap)
        values.append(rss_kib(pid))
    return int(statistics.median(values))


async def measure_rss(label: str, server: Daphne, key: str, paths: list[str], warm: int, batch: int,
                      infra: Infra | None, hold: float = 10.0) -> RssResult:
    """RSS with `warm` open streams, then with len(paths) open; then `hold` seconds of what holding costs."""
    result = RssResult(label, wanted=len(paths) - warm)
    stop = asyncio.Event()
    errors: dict[str, int] = {}
    warm_tasks, _warm_opened, _ = await hold_streams(server, key, paths[:warm], warm, 60, stop, errors)
    await asyncio.sleep(2)
    result.before_kib = await asyncio.to_thread(sample_rss, server.pid)
    if infra is not None:
        result.redis_clients_before = await asyncio.to_thread(infra.redis_clients)
    started = time.perf_counter()
    tasks, result.opened, result.failed = await hold_streams(server, key, paths[warm:], batch, 30, stop, errors)
    result.ramp_seconds = time.perf_counter() - started
    await asyncio.sleep(3)
    result.after_kib = await asyncio.to_thread(sample_rss, server.pid)
    if infra is not None:
        result.pg_connections = await asyncio.to_thread(infra.connections)
        result.redis_clients_after = await asyncio.to_thread(infra.redis_clients)
    cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
    commits0 = await asyncio.to_thread(infra.commits) if infra else None
    calls0 = await asyncio.to_thread(infra.redis_command_calls) if infra else None
    await asyncio.sleep(hold)
    result.hold_seconds = time.perf_counter() - t0
    result.hold_cpu = (cpu_seconds(server.pid) - cpu0) / result.hold_seconds
    if infra is not None:
        result.hold_commits_per_s = (await asyncio.to_thread(infra.commits) - commits0) / result.hold_seconds
        calls1 = await asyncio.to_thread(infra.redis_command_calls)
        result.hold_redis_per_s = sum(v - calls0.get(k, 0) for k, v in calls1.items()) / result.hold_seconds
    result.errors = errors
    result.ended_early = sum(n for reason, n in errors.items() if reason.startswith("open stream"))
    stop.set()
    everything = warm_tasks + tasks
    await asyncio.wait(everything, timeout=30)
    for task in everything:
        task.cancel()
    await asyncio.gather(*everything, return_exceptions=True)
    return result


# --- report ---------------------------------------------------------------------------------------
def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def print_phase_table(pairs: list[tuple[PhaseResult, PhaseResult]]) -> None:
    print()
    print("Load: delivered events/s and time to first delta (TTFD), per concurrency")
    header = (f"{'conc':>5} {'server':<6} {'window':>7} {'events/s':>10} {'replies':>8} {'ev/reply':>8} {'TTFD n':>6} "
              f"{'TTFD p50':>10} {'TTFD p99':>10} {'failed':>6} {'daphne':>7} "
              f"{'pg+redis':>8} {'client':>7} {'others':>7}")
    print(header)
    print("-" * len(header))
    for bare, tenex in pairs:
        for r in (bare, tenex):
            ttfd = r.ttfd_ms()
            print(f"{r.concurrency:>5} {r.label:<6} {r.duration:>6.1f}s {fmt(r.events_per_s, 0):>10} {r.replies:>8} "
                  f"{fmt(r.events_per_reply(), 1):>8} {len(ttfd):>6} "
                  f"{fmt(percentile(ttfd, 50)):>8}ms {fmt(percentile(ttfd, 99)):>8}ms "
                  f"{r.failed:>6} {r.server_cpu * 100:>6.0f}% {r.services_cpu * 100:>7.0f}% "
                  f"{r.client_cpu * 100:>6.0f}% "
                  f"{max(0.0, r.machine_cpu - r.server_cpu - r.services_cpu - r.client_cpu) * 100:>6.0f}%")
    cores = os.cpu_count() or 1
    print("(window = measured seconds; TTFD n = requests sent inside it that got a first delta; failed = requests "
          "sent inside it that did not end with `done`)")
    print(f"(CPU during the measured window, 100% = one core of {cores}: the daphne under test, every postgres and "
          f"redis-server process, this load generator, and everything else on the machine)")

# --- floors: the durable floor, paced replies, a real provider ------------------------------------
TARGET_DURABLE_RATIO = 0.6  # per reply, 0 ms: tenex events/s against the durable floor's
TARGET_PACED_RATIO = 0.95  # paced: tenex events/s against the relay floor's
TARGET_GAP_P99_ADDED_MS = 30.0  # paced: gap between words p99, above the relay's
TARGET_FIRST_P50_ADDED_MS = 15.0  # paced: time to first event p50, above the durable floor's
TARGET_FIRST_P99_ADDED_MS = 50.0
TARGET_LEVEL = 200
FLOOR_BOUND_CPU = 0.8  # a floor's daphne below this share of a core was not limited by its own work


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def compare_bytes(tenex_blocks: list[bytes], floor_blocks: list[bytes]) -> str:
    """Event count and per-event sizes of a floor's reply against tenex's (ids are of equal length)."""
    sizes = [len(b) for b in tenex_blocks]
    floor_sizes = [len(b) for b in floor_blocks]
    same = sum(1 for a, b in zip(sizes, floor_sizes, strict=False) if a == b)
    return (f"{len(floor_blocks)} blocks vs tenex {len(tenex_blocks)} (same count: {len(sizes) == len(floor_sizes)}), "
            f"{same} of {len(sizes)} the same size, {sum(floor_sizes):,} bytes vs {sum(sizes):,}"
            + ("" if same == len(sizes) else "; differing (#index tenex/floor): " + ", ".join(
                [f"#{i} {a}/{b}" for i, (a, b) in enumerate(zip(sizes, floor_sizes, strict=False)) if a != b][:6])))


def print_floor_table(title: str, rows: list[tuple[int, list[PhaseResult]]], asked_per_stream: float | None) -> None:
    """One row per server and level: what the issue's targets compare."""
    print()
    print(title)
    header = (f"{'conc':>5} {'server':<9} {'events/s':>9} {'asked':>7} {'replies':>7} {'ev/rep':>6} {'failed':>6} "
              f"{'daphne':>7} {'ms/rep':>7} {'1st ev p50':>11} {'p99':>9} {'gap p50':>8} {'p99':>8} "
              f"{'TTFD p50':>9} {'pg+redis':>8} {'client':>6} {'extra':>12}")
    print(header)
    print("-" * len(header))
    for concurrency, results in rows:
        for r in results:
            asked = fmt(concurrency * asked_per_stream, 0) if asked_per_stream else "-"
            first, gaps = r.first_event_ms(), r.gap_ms()
            extra = " ".join(f"{name} {cpu * 100:.0f}%" for name, cpu in r.extra_cpu.items()) or "-"
            print(f"{concurrency:>5} {r.label:<9} {fmt(r.events_per_s, 0):>9} {asked:>7} {r.replies:>7} "
                  f"{fmt(r.events_per_reply(), 0):>6} {r.failed:>6} {r.server_cpu:>7.2f} "
                  f"{fmt(r.cpu_ms_per_reply()):>7} "
                  f"{fmt(percentile(first, 50)):>9}ms {fmt(percentile(first, 99)):>7}ms "
                  f"{fmt(percentile(gaps, 50)):>6}ms {fmt(percentile(gaps, 99)):>6}ms "
                  f"{fmt(percentile(r.ttfd_ms(), 50)):>7}ms {r.services_cpu:>8.2f} {r.client_cpu:>6.2f} {extra:>12}")
    print("(daphne = the server's process CPU seconds / wall seconds; ms/rep = its CPU per reply; 1st ev = request "
          "sent -> first SSE event; gap = per word, the time since the previous read of its stream that brought "
          "words; "
          "asked = streams x words/s)")


FLOOR_KEPT_UP = 0.9  # a paced floor that delivered less than this share of the asked rate was not a floor


def paced_ratios(rows: list[tuple[int, list[PhaseResult]]], relay: str, first_floor: str,
                 asked_per_stream: float) -> list[str]:
    """tenex against the floors at each level; PASS/FAIL at TARGET_LEVEL, figures elsewhere. A floor
    that did not keep up with the asked rate (the machine, the client, PostgreSQL or Redis held it
    back) judges nothing: its checks print `[ ?? ]` with what it delivered."""
    lines = []
    for concurrency, results in rows:
        by = {r.label.split("-")[0]: r for r in results}
        tenex, floor, first = by["tenex"], by[relay], by[first_floor]
        ratio = tenex.events_per_s / floor.events_per_s if floor.events_per_s else float("nan")
        gap = percentile(tenex.gap_ms(), 99) - percentile(floor.gap_ms(), 99)
        p50 = percentile(tenex.first_event_ms(), 50) - percentile(first.first_event_ms(), 50)
        p99 = percentile(tenex.first_event_ms(), 99) - percentile(first.first_event_ms(), 99)
        checks = [
            (f"events/s tenex/{floor.label} >= {TARGET_PACED_RATIO}", ratio >= TARGET_PACED_RATIO,
             f"{tenex.events_per_s:,.0f} / {floor.events_per_s:,.0f} = {ratio:.2f}"),
            (f"gap p99 <= {floor.label} + {TARGET_GAP_P99_ADDED_MS:g} ms", gap <= TARGET_GAP_P99_ADDED_MS,
             f"{fmt(percentile(tenex.gap_ms(), 99))} - {fmt(percentile(floor.gap_ms(), 99))} = {fmt(gap)} ms"),
            (f"first event p50 <= {first.label} + {TARGET_FIRST_P50_ADDED_MS:g} ms", p50 <= TARGET_FIRST_P50_ADDED_MS,
             f"{fmt(percentile(tenex.first_event_ms(), 50))} - {fmt(percentile(first.first_event_ms(), 50))} "
             f"= {fmt(p50)} ms"),
            (f"first event p99 <= {first.label} + {TARGET_FIRST_P99_ADDED_MS:g} ms", p99 <= TARGET_FIRST_P99_ADDED_MS,
             f"{fmt(percentile(tenex.first_event_ms(), 99))} - {fmt(percentile(first.first_event_ms(), 99))} "
             f"= {fmt(p99)} ms"),
        ]
        short = {r.label: r.events_per_s / (concurrency * asked_per_stream) for r in (floor, first)
                 if r.events_per_s < FLOOR_KEPT_UP * concurrency * asked_per_stream}
        for index, (label, ok, detail) in enumerate(checks):
            judge = floor if index < 2 else first
            if judge.label in short:
                lines.append(f"  [ ?? ] {concurrency}: {label}: {detail} (not judged: {judge.label} delivered "
                             f"{short[judge.label]:.0%} of the asked rate, so it was no floor on this run)")
            elif concurrency == TARGET_LEVEL:
                lines.append(check(f"{concurrency}: {label}", ok, detail))
            else:
                lines.append(f"  [ -- ] {concurrency}: {label}: {detail}")
    return lines


async def floor_capture(floor: Daphne, tenex: Daphne, key: str) -> tuple[list[bytes], dict]:
    """One reply of a floor that writes (the durable floor), on a new thread tenex created."""
    [path] = await create_threads(tenex, key, 1, f"capture-{floor.label}")
    _headers, blocks, info = await capture_reply(floor, key, path)
    return blocks, info


def provider_env(kind: str, provider_url: str) -> dict[str, str]:
    base = {"openai": "OPENAI", "anthropic": "ANTHROPIC"}[kind]
    return {"TENEX_LLM_PROVIDER": kind, f"{base}_BASE_URL": provider_url + ("/v1" if kind == "openai" else ""),
            f"{base}_API_KEY": "bench-provider-key", "TENEX_LLM_MAX_RETRIES": "0", "TENEX_LLM_MODEL": "bench-model"}


class WireProvider:
    """bench/wire_provider.py in its own process: the provider's wire format, one word per delay."""

    def __init__(self, workdir: Path, words: int, delay_ms: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stderr = open(workdir / "wire-provider.stderr", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "wire_provider.py"), "--port", str(self.port), "--words", str(words),
             "--delay-ms", str(delay_ms)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the wire provider did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        self._stderr.close()  # closing again is harmless


def run_floors(args, infra: Infra, key: str, tenex0: Daphne, capture: tuple[list, list[bytes], dict], workdir: Path,
               start: Callable[..., Daphne], stop: Callable[[Daphne], None]) -> None:
    """The paced mode (--paced) and the provider mode (--provider): tenex beside its floors."""
    headers, tenex_blocks, info = capture
    capture_path = workdir / "capture.json"
    levels = [int(c) for c in (args.concurrency or ("50,200" if args.provider else "50,200,400")).split(",")]
    delay = args.delay_ms
    spread = info["deltas"] * delay / 1000  # one reply's length: arrivals spread over it
    warmup = spread + args.warmup
    asked = 1000 / delay
    plans: list[tuple[str, list[Daphne], str, str, WireProvider | None]] = []
    if args.paced:
        relay = start("relay", "bench.bare_sse_app:application", BENCH_SSE_CAPTURE=str(capture_path),
                      BENCH_BARE_DELAY_MS=str(delay))
        durable = start("durable", "bench.durable_floor_app:application", BENCH_SSE_CAPTURE=str(capture_path),
                        BENCH_FLOOR_DELAY_MS=str(delay))
        blocks, _info = asyncio.run(floor_capture(durable, tenex0, key))
        log("durable floor's reply against tenex's: " + compare_bytes(tenex_blocks, blocks))
        tenex = start("tenex", "tenex.asgi:application", TENEX_LOCAL_TOKEN_DELAY_MS=str(delay))
        plans.append((f"Paced: one word per {delay} ms, arrivals spread over {spread:.1f} s",
                      [relay, durable, tenex], "relay", "durable", None))
    providers: list[WireProvider] = []  # stopped however the run ends
    try:
        for kind in [p for p in (args.provider or "").split(",") if p]:
            provider = WireProvider(workdir, args.provider_words, delay)
            providers.append(provider)
            env = provider_env(kind, provider.url)
            relay = start(f"prelay-{kind}", "bench.provider_relay_app:application", BENCH_SSE_CAPTURE=str(capture_path),
                          BENCH_PROVIDER_URL=provider.url, BENCH_PROVIDER_KIND=kind)
            tenex = start(f"tenex-{kind}", "tenex.asgi:application", **env)
            _h, blocks, pinfo = asyncio.run(capture_reply(tenex, key))
            log(f"tenex through {kind}: {pinfo['deltas']} deltas, {pinfo['tool_calls']} tool_call events, "
                f"{pinfo['events']} events, {pinfo['bytes']:,} bytes")
            plans.append((f"Through the {kind} provider (official SDK) against bench/wire_provider.py: one word per "
                          f"{delay} ms, {args.provider_words} words", [relay, tenex], "prelay", "prelay", provider))
        stop(tenex0)

        for title, servers, relay_label, first_label, provider in plans:
            rows: list[tuple[int, list[PhaseResult]]] = []
            extra = {"provider": provider.process.pid} if provider else None
            for concurrency in levels:
                results = []
                only = tuple(p for p in args.only.split(",") if p)
                for server in [s for s in servers if not only or s.label.startswith(only)]:
                    if server.label.startswith(("relay", "prelay")):
                        paths = [f"/stream/{i}" for i in range(concurrency)]
                    else:
                        paths = asyncio.run(create_threads(tenex_for_threads(servers), key, concurrency,
                                                           f"{server.label}{concurrency}"))
                    log(f"{server.label}: {concurrency} streams, {warmup:.1f} s warm-up + {args.duration:g} s")
                    result = asyncio.run(load_phase(Target(server.label, [server], key, paths), concurrency, warmup,
                                                    args.duration, args.client, max_duration=args.max_duration,
                                                    spread=spread, extra_pids=extra))
                    extra_cpu = "".join(f", {n} CPU {c:.2f}" for n, c in result.extra_cpu.items())
                    log(f"  {result.events_per_s:,.0f} events/s, daphne CPU {result.server_cpu:.2f}, first event p50 "
                        f"{fmt(percentile(result.first_event_ms(), 50))} ms, gap p99 "
                        f"{fmt(percentile(result.gap_ms(), 99))} ms, failed {result.failed}{extra_cpu}")
                    for error, n in sorted(result.errors.items(), key=lambda kv: -kv[1])[:6]:
                        log(f"  error x{n}: {error}")
                    results.append(result)
                    if not server.label.startswith(("relay", "prelay")):
                        remaining = infra.wait_until_idle(90)
                        if remaining:
                            log(f"  {remaining} replies still streaming 90 s after the phase (left running)")
                rows.append((concurrency, results))
            print_floor_table(title, rows, asked)
            if len(rows[0][1]) == len(servers):
                print("tenex against the floors (targets at 200 streams; other levels reported)")
                for line in paced_ratios(rows, relay_label, first_label, asked):
                    print(line)
            for server in servers:
                stop(server)
    finally:
        for provider in providers:
            provider.stop()


def tenex_for_threads(servers: list[Daphne]) -> Daphne:
    """The tenex server of a plan (threads for a floor that writes are created through tenex)."""
    return next(s for s in servers if s.label.startswith("tenex"))



def check(label: str, ok: bool, detail: str) -> str:
    return f"  [{'PASS' if ok else 'FAIL'}] {label}: {detail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default=None,
                        help="comma-separated stream counts (default 50,200; paced 50,200,400; provider 50,200)")
    parser.add_argument("--paced", action="store_true",
                        help="paced mode: one word per --delay-ms, tenex against the relay and durable floors")
    parser.add_argument("--provider", default="",
                        help="provider mode: comma-separated providers (openai,anthropic) against a wire-format "
                             "server, beside a relay reading the same stream")
    parser.add_argument("--delay-ms", type=int, default=20, help="paced and provider modes: ms between words (20)")
    parser.add_argument("--provider-words", type=int, default=130, help="words per provider reply (130)")
    parser.add_argument("--only", default="", help="paced and provider modes: measure only these servers "
                        "(comma-separated label prefixes: relay, durable, tenex, prelay)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds before each run (default 5)")
    parser.add_argument("--max-duration", type=float, default=60.0,
                        help="longest window while waiting for one TTFD sample per stream (default 60)")
    parser.add_argument("--slow-streams", type=int, default=1000,
                        help="open streams for the RSS measure (default 1000)")
    parser.add_argument("--slow-delay-ms", type=int, default=2000, help="token delay that keeps streams open")
    parser.add_argument("--processes", type=int, default=1,
                        help="daphne processes per server under load, workers spread over them (default 1)")
    parser.add_argument("--one-port", action="store_true",
                        help="serve the --processes through one port with `manage.py serve` (the kernel spreads "
                             "the workers' connections) instead of one port each")
    parser.add_argument("--skip-rss", action="store_true", help="skip the RSS-per-open-stream measurement")
    parser.add_argument("--skip-bare-rss", action="store_true", help="skip the bare app's RSS measurement")
    parser.add_argument("--keep", action="store_true", help="keep (reuse) the database; do not drop it at the end")
    parser.add_argument("--words", type=int, default=130, help="target words per reply (default 130)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator HTTP client")
    parser.add_argument("--database", default="tenex_bench_stream")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("PGPORT", "5432")))
    parser.add_argument("--pg-admin", default=os.environ.get("PGADMIN", "postgres"))
    args = parser.parse_args()
    levels = [int(c) for c in (args.concurrency or "50,200").split(",") if c.strip()]

    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="tenex-bench-stream-"))
    infra = Infra(args.pg_host, args.pg_port, args.pg_admin, args.database, args.redis_url, args.keep)
    servers: list[Daphne] = []
    started = time.perf_counter()

    def start(label: str, app: str, one_port_processes: int = 0, **extra: str) -> Daphne:
        server = Daphne(label, app, {**infra.base_env(), **extra}, workdir, one_port_processes)
        servers.append(server)
        server.wait_ready()
        return server

    def stop(server: Daphne) -> None:
        server.stop()
        servers.remove(server)

    try:
        log(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, logs in {workdir}; load average {load_average()}")
        log(f"database {args.database} (owner tenex_owner, server role tenex_app), Redis {args.redis_url}")
        kept = infra.prepare()
        infra.flush_redis()
        key = infra.api_key()
        # More processes of each (--processes): one port each, workers spread over them, or all
        # behind one port (--one-port).
        one_port = args.processes if args.one_port and args.processes > 1 else 0
        separate = 1 if one_port else args.processes
        tenex = start("tenex", "tenex.asgi:application", one_port)
        more_tenex = [start(f"tenex-{i}", "tenex.asgi:application") for i in range(2, separate + 1)]
        if not kept:
            per_passage = asyncio.run(seed_knowledge(tenex, key, args.words))
            log(f"seeded {len(DOC_TITLES)} knowledge documents of {per_passage} words each")
        headers, blocks, info = asyncio.run(capture_reply(tenex, key))
        log(f"captured reply: {info['words']} words per reply, {info['deltas']} deltas, {info['tool_calls']} tool_call "
            f"events, {info['events']} events, {info['bytes']:,} bytes of SSE; content == joined deltas: "
            f"{info['final_content_matches']}")
        capture_path = workdir / "capture.json"
        capture_path.write_text(json.dumps({"headers": headers, "chunks": [b.decode("latin-1") for b in blocks]}))
        log("replayed headers: " + "; ".join(f"{n}: {v}" for n, v in headers))
        if args.paced or args.provider:
            run_floors(args, infra, key, tenex, (headers, blocks, info), workdir, start, stop)
            log(f"done in {time.perf_counter() - started:.0f} s; load average {load_average()}")
            return 0
        bare = start("bare", "bench.bare_sse_app:application", one_port, BENCH_SSE_CAPTURE=str(capture_path))
        more_bare = [start(f"bare-{i}", "bench.bare_sse_app:application", BENCH_SSE_CAPTURE=str(capture_path))
                     for i in range(2, separate + 1)]
        durable = start("durable", "bench.durable_floor_app:application", BENCH_SSE_CAPTURE=str(capture_path))
        durable_blocks, _info = asyncio.run(floor_capture(durable, tenex, key))
        log("durable floor's reply against tenex's: " + compare_bytes(blocks, durable_blocks))
        durables: list[tuple[int, list[PhaseResult]]] = []

        pairs: list[tuple[PhaseResult, PhaseResult]] = []
        for concurrency in levels:
            paths = asyncio.run(create_threads(tenex, key, concurrency, f"c{concurrency}"))
            bare_target = Target("bare", [bare, *more_bare], key, [f"/stream/{i}" for i in range(concurrency)])
            tenex_target = Target("tenex", [tenex, *more_tenex], key, paths)
            durable_paths = asyncio.run(create_threads(tenex, key, concurrency, f"d{concurrency}"))
            durable_target = Target("durable", [durable], key, durable_paths)
            results = []
            for target in (bare_target, durable_target, tenex_target):
                log(f"{target.label}: {concurrency} concurrent streams, "
                    f"{args.warmup:g} s warm-up + {args.duration:g} s")
                result = asyncio.run(load_phase(target, concurrency, args.warmup, args.duration, args.client,
                                                redis_calls=infra.redis_command_calls, max_duration=args.max_duration))
                log(f"  {result.duration:.1f} s window: {result.events_per_s:,.0f} events/s, {result.replies} replies, "
                    f"TTFD p50 {fmt(percentile(result.ttfd_ms(), 50))} ms, failed {result.failed}"
                    + ("" if result.drained else " (NOT drained: in-flight requests cancelled)"))
                for error, n in sorted(result.errors.items(), key=lambda kv: -kv[1])[:8]:
                    log(f"  error x{n}: {error}")
                results.append(result)
                if target is not bare_target:
                    remaining = infra.wait_until_idle(90)
                    if remaining:
                        log(f"  {remaining} replies still streaming 90 s after the phase (left running)")
            pairs.append((results[0], results[2]))
            durables.append((concurrency, results))
        for server in (bare, *more_bare, durable, tenex, *more_tenex):
            stop(server)

        rss_results: list[RssResult] = []
        if not args.skip_rss:
            warm = 20
            slow = start("tenex-slow", "tenex.asgi:application", TENEX_LOCAL_TOKEN_DELAY_MS=str(args.slow_delay_ms))
            log(f"tenex (token delay {args.slow_delay_ms} ms): creating {warm + args.slow_streams} threads")
            paths = asyncio.run(create_threads(slow, key, warm + args.slow_streams, "rss"))
            log(f"tenex: {warm} warm-up streams, then {args.slow_streams} more in batches of 50")
            rss = asyncio.run(measure_rss("tenex", slow, key, paths, warm, 50, infra))
            rss_results.append(rss)
            stop(slow)
            if not args.skip_bare_rss:
                bare_slow = start("bare-slow", "bench.bare_sse_app:application", BENCH_SSE_CAPTURE=str(capture_path),
                                  BENCH_BARE_DELAY_MS=str(args.slow_delay_ms))
                log(f"bare (pause {args.slow_delay_ms} ms): {warm} warm-up streams, then {args.slow_streams} more")
                bare_paths = [f"/stream/{i}" for i in range(warm + args.slow_streams)]
                rss_results.append(asyncio.run(measure_rss("bare", bare_slow, key, bare_paths, warm, 50, None)))
                stop(bare_slow)
            for r in rss_results:
                log(f"{r.label}: RSS {r.before_kib:,} KiB -> {r.after_kib:,} KiB "
                    f"with {r.opened}/{r.wanted} streams open (ramp {r.ramp_seconds:.1f} s, {r.failed} failed)")
                for error, n in sorted(r.errors.items(), key=lambda kv: -kv[1])[:6]:
                    log(f"  error x{n}: {error}")

        # --- report ---
        print_phase_table(pairs)
        print_floor_table("Per reply (0 ms between words): tenex against the durable floor", durables, None)
        for concurrency, (_bare_r, durable_r, tenex_r) in durables:
            ratio = tenex_r.events_per_s / durable_r.events_per_s if durable_r.events_per_s else float("nan")
            cpu_ratio = durable_r.cpu_ms_per_reply() / tenex_r.cpu_ms_per_reply()
            detail = (f"{tenex_r.events_per_s:,.0f} / {durable_r.events_per_s:,.0f} = {ratio:.2f}; daphne CPU per "
                      f"reply durable/tenex {fmt(durable_r.cpu_ms_per_reply())} / {fmt(tenex_r.cpu_ms_per_reply())} ms "
                      f"= {cpu_ratio:.2f}")
            if durable_r.server_cpu < FLOOR_BOUND_CPU:
                detail += (f" (the floor used {durable_r.server_cpu:.2f} of a core: it waited on PostgreSQL, Redis or "
                           f"the machine, so events/s compares latencies; the CPU ratio is what one core could carry)")
            label = f"{concurrency}: events/s tenex/durable >= {TARGET_DURABLE_RATIO}"
            passed = ratio >= TARGET_DURABLE_RATIO
            print(check(label, passed, detail) if concurrency == 50 else f"  [ -- ] {label}: {detail}")
        print()
        print("Ratios (tenex vs the bare floor under the same daphne)")
        print(f"{'conc':>5} {'events/s tenex/bare':>20} {'TTFD p50 added':>15} {'TTFD p99 added':>15}")
        for bare_r, tenex_r in pairs:
            ratio = tenex_r.events_per_s / bare_r.events_per_s if bare_r.events_per_s else float("nan")
            p50 = percentile(tenex_r.ttfd_ms(), 50) - percentile(bare_r.ttfd_ms(), 50)
            p99 = percentile(tenex_r.ttfd_ms(), 99) - percentile(bare_r.ttfd_ms(), 99)
            print(f"{bare_r.concurrency:>5} {ratio * 100:>19.1f}% {fmt(p50):>12} ms {fmt(p99):>12} ms")
        print()
        print("tenex TTFD p50 split: request -> response head (view: auth, 2 inserts, history, commit) | head -> first "
              "event (generation start, provider round 1, tool_call running) | first event -> first delta "
              "(search_knowledge, round 2)")
        for bare_r, tenex_r in pairs:
            parts = [fmt(percentile(tenex_r.part_ms(name), 50)) for name in ("head", "start", "tool")]
            bare_head = fmt(percentile(bare_r.part_ms("head"), 50))
            print(f"{tenex_r.concurrency:>5}: {parts[0]} ms | {parts[1]} ms | {parts[2]} ms   "
                  f"(bare: head {bare_head} ms)")
        print()
        print("Redis commands per delivered event during the tenex windows (server-wide counts)")
        for _bare_r, tenex_r in pairs:
            events = max(1, tenex_r.events_in_window)
            top = sorted(tenex_r.redis_calls.items(), key=lambda kv: -kv[1])[:8]
            print(f"{tenex_r.concurrency:>5}: total {sum(tenex_r.redis_calls.values()) / events:.2f}/event; "
                  + ", ".join(f"{name} {calls / events:.2f}" for name, calls in top))
        if rss_results:
            print()
            print("RSS per open stream")
            print(f"{'server':<6} {'streams':>8} {'before':>12} {'after':>12} {'per stream':>11} {'pg conns':>9} "
                  f"{'redis clients':>14} {'hold CPU':>9} {'commits/s':>10} {'redis cmd/s':>12} {'ended early':>12}")
            for r in rss_results:
                redis_clients = (f"{r.redis_clients_before}->{r.redis_clients_after}"
                                 if r.redis_clients_after is not None else "-")
                print(f"{r.label:<6} {r.opened:>8} {r.before_kib:>9,} KiB {r.after_kib:>9,} KiB "
                      f"{fmt(r.per_stream_kib):>7} KiB {r.pg_connections if r.pg_connections is not None else '-':>9} "
                      f"{redis_clients:>14} {r.hold_cpu * 100:>8.0f}% "
                      f"{fmt(r.hold_commits_per_s, 0) if r.hold_commits_per_s is not None else '-':>10} "
                      f"{fmt(r.hold_redis_per_s, 0) if r.hold_redis_per_s is not None else '-':>12} "
                      f"{r.ended_early:>12}")
            print(f"(per stream = (after - before) / streams opened; "
                  f"hold = the {rss_results[0].hold_seconds:.0f} s after "
                  f"the last stream opened: daphne CPU, database commits/s, Redis commands/s server-wide)")

        print()
        print("Targets")
        for bare_r, tenex_r in pairs:
            ratio = tenex_r.events_per_s / bare_r.events_per_s if bare_r.events_per_s else float("nan")
            print(check(f"events/s at {bare_r.concurrency} streams >= {TARGET_EVENTS_RATIO:.0%} of bare",
                        ratio >= TARGET_EVENTS_RATIO and tenex_r.failed == 0,
                        f"{tenex_r.events_per_s:,.0f} / {bare_r.events_per_s:,.0f} = {ratio:.1%}"
                        + (f", {tenex_r.failed} failed replies" if tenex_r.failed else "")))
            added = percentile(tenex_r.ttfd_ms(), 50) - percentile(bare_r.ttfd_ms(), 50)
            print(check(f"TTFD p50 at {bare_r.concurrency} streams <= bare + {TARGET_TTFD_ADDED_MS:g} ms",
                        added <= TARGET_TTFD_ADDED_MS,
                        f"{fmt(percentile(tenex_r.ttfd_ms(), 50))} ms - {fmt(percentile(bare_r.ttfd_ms(), 50))} ms "
                        f"= +{fmt(added)} ms"))
        tenex_rss = next((r for r in rss_results if r.label == "tenex"), None)
        if tenex_rss is not None:
            complete = tenex_rss.opened == tenex_rss.wanted
            print(check(f"RSS per open stream <= {TARGET_RSS_KIB:g} KiB",
                        tenex_rss.per_stream_kib <= TARGET_RSS_KIB and complete,
                        f"{fmt(tenex_rss.per_stream_kib)} KiB over {tenex_rss.opened}/{tenex_rss.wanted} open streams"))
        log(f"done in {time.perf_counter() - started:.0f} s; load average {load_average()}")
        return 0
    except Exception:
        for server in servers:
            print(f"\n--- daphne {server.label} stderr (tail) ---\n{server.stderr_tail()}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()
        for path in sorted(workdir.glob("daphne-*.stderr")):
            name = path.name.removeprefix("daphne-").removesuffix(".stderr")
            if path.stat().st_size:
                text = path.read_bytes().decode(errors="replace")
                noisy = [line for line in text.splitlines()
                         if any(w in line for w in ("Error", "ERROR", "Exception", "Timeout", "WARNING"))]
                if noisy:
                    print(f"\ndaphne {name} stderr: {len(noisy)} error/warning lines ({path}); most frequent:")
                    counts: dict[str, int] = {}
                    for line in noisy:
                        # Group lines that differ only in numbers and ids (task names, message ids).
                        key = re.sub(r"\b(msg|thr)_\w+|\d+", "#", line.strip())[:160]
                        counts[key] = counts.get(key, 0) + 1
                    for line, n in sorted(counts.items(), key=lambda kv: -kv[1])[:10]:
                        print(f"  {n:6d} x {line}")
        try:
            infra.drop()
        except Exception as exc:  # noqa: BLE001
            print(f"could not drop {args.database}: {exc}", file=sys.stderr)
        print(f"logs: {workdir}")


if __name__ == "__main__":
    sys.exit(main())
