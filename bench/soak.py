"""Soak: paced streams across two tenex processes through a Redis outage and a PostgreSQL outage,
sampling each process's RSS, to show what the outages leave behind in memory.

    .venv/bin/python bench/soak.py [--duration 1800] [--streams 100] [--token-ms 30]
                                   [--outage-seconds 20] [--plot bench/soak.png]

What it does, in one run on this machine:
1. Creates a dedicated database (`tenex_bench_soak`, dropped and recreated) on the local PostgreSQL,
   migrated as `tenex_owner`, served as `tenex_app` (row-level security applies), and starts its own
   `redis-server` on a free port. The two daphne processes reach PostgreSQL through a TCP proxy the
   bench controls (`tests/tcp_proxy.py`), so an outage is a cut of every connection and a refusal of
   new ones, not a stop of the machine's server.
2. Seeds knowledge so each reply is ~`--words` words, paced at `--token-ms` per word by the local
   provider, and runs `--streams` workers (half on each process): each POSTs a message with
   `Accept: text/event-stream`, reads the stream to its end, and sends the next one; a 503 or a
   dropped connection waits a second and sends again.
3. At 40 % of the duration it stops Redis for `--outage-seconds` (restarting it empty); at 60 % it
   cuts PostgreSQL for as long. Every `--sample-seconds` it records each process's VmRSS.
4. Prints the RSS figures the issue asks about (minute 5, just before the first outage, the end)
   with their ratios, the outcomes of every reply (endings by status and code, HTTP statuses,
   dropped streams) per phase, and writes a PNG of RSS over time with the outages shaded.
Exit status is 0 whenever the measurement ran (a memory that grew is a result, not a failure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream import (  # noqa: E402 - bench/ is this script's directory: its sibling's helpers
    Daphne,
    HttpError,
    Infra,
    RawClient,
    SSECounter,
    create_threads,
    free_port,
    log,
    raise_nofile,
    rss_kib,
    seed_knowledge,
)

from tests.tcp_proxy import PostgresProxy  # noqa: E402

QUESTION = "What is the Aurora launch plan for pricing, channels and support?"


def start_redis(port: int, directory: str) -> subprocess.Popen:
    import socket

    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory], stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def stop_redis(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(10)


class Outcomes:
    """What every reply came to, per phase of the run."""

    def __init__(self) -> None:
        self.phase = "before"
        self.by_phase: dict[str, Counter] = {}

    def note(self, what: str) -> None:
        self.by_phase.setdefault(self.phase, Counter())[what] += 1


async def worker(index: int, server: Daphne, key: str, path: str, stop_at: float, outcomes: Outcomes) -> None:
    await asyncio.sleep(random.random() * 2)  # noqa: S311 - spread the starts
    client = RawClient("127.0.0.1", server.port, key, 60)
    body = json.dumps({"content": QUESTION}).encode()
    while time.monotonic() < stop_at:
        counter = SSECounter()
        tail = bytearray()

        def keep_tail(data: bytes, _counter: SSECounter, tail: bytearray = tail) -> None:
            tail.extend(data)
            del tail[:-4000]

        counter.tap = keep_tail
        try:
            status, _headers, _body = await client.post_stream(path, body, counter)
        except (HttpError, OSError) as exc:
            outcomes.note(f"dropped: {str(exc)[:40]}")
            await client.close()
            await asyncio.sleep(1)
            continue
        if status != 200:
            outcomes.note(f"HTTP {status}")
            await asyncio.sleep(1)
            continue
        outcomes.note(ending_of(bytes(tail), counter.terminal))


def ending_of(tail: bytes, terminal: str | None) -> str:
    """`done complete`, `error stream_unavailable`...: the stream's last event, from its data."""
    if terminal is None:
        return "no ending"
    block = tail.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    data = next((line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")), b"{}")
    try:
        event = json.loads(data)
    except ValueError:
        return f"{terminal} (unparsed)"
    if terminal == "error":
        return f"error {event.get('error', {}).get('code')}"
    return f"done {event.get('message', {}).get('status')}"


async def soak(args, servers: list[Daphne], key: str, paths: list[str], redis_port: int, redis_dir: str,
               redis_box: list, proxy: PostgresProxy) -> dict:
    outcomes = Outcomes()
    started = time.monotonic()
    stop_at = started + args.duration
    samples: list[tuple[float, list[int]]] = []
    events: list[tuple[str, float, float]] = []  # (what, from, to) seconds since start
    tasks = [
        asyncio.ensure_future(worker(i, servers[i % 2], key, paths[i], stop_at, outcomes)) for i in range(args.streams)
    ]

    async def sample_forever() -> None:
        while time.monotonic() < stop_at + args.idle_seconds:
            samples.append((time.monotonic() - started, [rss_kib(server.pid) for server in servers]))
            await asyncio.sleep(args.sample_seconds)

    async def outages() -> None:
        redis_at, db_at = 0.4 * args.duration, 0.6 * args.duration
        await asyncio.sleep(redis_at)
        log("Redis down")
        outcomes.phase = "redis outage"
        stop_redis(redis_box[0])
        await asyncio.sleep(args.outage_seconds)
        redis_box[0] = start_redis(redis_port, redis_dir)
        events.append(("Redis down", redis_at, redis_at + args.outage_seconds))
        log("Redis back (empty)")
        outcomes.phase = "between"
        await asyncio.sleep(db_at - (time.monotonic() - started))
        log("PostgreSQL cut")
        outcomes.phase = "postgres outage"
        proxy.cut()
        await asyncio.sleep(args.outage_seconds)
        proxy.restore()
        events.append(("PostgreSQL cut", db_at, db_at + args.outage_seconds))
        log("PostgreSQL back")
        outcomes.phase = "after"

    sampler = asyncio.ensure_future(sample_forever())
    outage_task = asyncio.ensure_future(outages())
    last_report = started
    while time.monotonic() < stop_at:
        await asyncio.sleep(5)
        if time.monotonic() - last_report >= 60:
            last_report = time.monotonic()
            rss = samples[-1][1] if samples else []
            log(f"{(last_report - started) / 60:.0f} min: RSS {[round(r / 1024) for r in rss]} MiB; "
                f"{ {phase: dict(c.most_common(4)) for phase, c in outcomes.by_phase.items()} }")
    await asyncio.gather(*tasks, return_exceptions=True)
    log(f"load stopped; idle for {args.idle_seconds} s")
    await sampler
    outage_task.cancel()
    return {"samples": samples, "outages": events, "outcomes": {p: dict(c) for p, c in outcomes.by_phase.items()},
            "duration": args.duration, "idle_seconds": args.idle_seconds}


def rss_at(samples: list[tuple[float, list[int]]], at: float, process: int) -> int:
    """The RSS sample nearest to `at` seconds."""
    return min(samples, key=lambda sample: abs(sample[0] - at))[1][process]


def figures(result: dict) -> list[str]:
    samples, outages = result["samples"], result["outages"]
    first_outage = outages[0][1] if outages else result["duration"]
    end = result["duration"]
    lines = []
    for process in range(len(samples[0][1])):
        minute5 = rss_at(samples, min(300, first_outage / 2), process)
        before = rss_at(samples, first_outage - 5, process)
        at_end = rss_at(samples, end, process)
        idle = samples[-1][1][process]
        lines.append(
            f"process {'ab'[process]}: minute 5 {minute5 / 1024:.1f} MiB, "
            f"before the first outage {before / 1024:.1f} MiB "
            f"({(before / minute5 - 1) * 100:+.1f} %), end of load {at_end / 1024:.1f} MiB "
            f"({(at_end / before - 1) * 100:+.1f} % vs. before the outages), after {result['idle_seconds']} s idle "
            f"{idle / 1024:.1f} MiB ({(idle / before - 1) * 100:+.1f} %)"
        )
    return lines


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    minutes = [at / 60 for at, _rss in samples]
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    for process in range(len(samples[0][1])):
        axes.plot(minutes, [rss[process] / 1024 for _at, rss in samples], label=f"process {'ab'[process]}")
    for (what, start, end), colour in zip(result["outages"], ("tab:red", "tab:purple"), strict=False):
        axes.axvspan(start / 60, end / 60, color=colour, alpha=0.25, label=what)
    axes.axvline(result["duration"] / 60, color="grey", linestyle="--", linewidth=1, label="load stops")
    axes.set_xlabel("minutes")
    axes.set_ylabel("RSS (MiB)")
    axes.set_ylim(bottom=0)
    axes.set_title(f"tenex soak: RSS per daphne process, {len(result['outcomes'])} phases")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800, help="seconds of load (default 30 minutes)")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--token-ms", type=int, default=30)
    parser.add_argument("--words", type=int, default=120, help="about how many words each reply has")
    parser.add_argument("--outage-seconds", type=float, default=20)
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--idle-seconds", type=float, default=45, help="RSS sampled this long after the load")
    parser.add_argument("--plot", type=Path, default=Path(__file__).with_name("soak.png"))
    parser.add_argument("--json", type=Path, default=None, help="write the samples and outcomes here")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-admin", default="postgres")
    parser.add_argument("--database", default="tenex_bench_soak")
    parser.add_argument("--db-pool-max", type=int, default=10,
                        help="pooled PostgreSQL connections per process (the server's slots are shared)")
    args = parser.parse_args()
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="tenex-soak-"))
    redis_port = free_port()
    redis_box = [start_redis(redis_port, str(workdir))]
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    infra = Infra(args.pg_host, args.pg_port, args.pg_admin, args.database, redis_url, keep=False)
    servers: list[Daphne] = []
    proxy = PostgresProxy((args.pg_host, args.pg_port), free_port())
    try:
        infra.prepare()
        key = infra.api_key()
        proxy.restore()
        env = {
            **infra.base_env(),
            "DATABASE_URL": f"postgres://tenex_app@127.0.0.1:{proxy.port}/{args.database}",
            "TENEX_LOCAL_TOKEN_DELAY_MS": str(args.token_ms),
            "TENEX_DB_POOL_MAX": str(args.db_pool_max),
        }
        servers = [Daphne(label, "tenex.asgi:application", env, workdir) for label in ("a", "b")]
        for server in servers:
            server.wait_ready()
        asyncio.run(seed_knowledge(servers[0], key, args.words))
        paths = asyncio.run(create_threads(servers[0], key, args.streams, "soak"))
        log(f"{args.streams} streams on 2 processes for {args.duration:.0f} s; outages of {args.outage_seconds:.0f} s "
            f"at 40 % and 60 %; logs in {workdir}")
        result = asyncio.run(soak(args, servers, key, paths, redis_port, str(workdir), redis_box, proxy))
        for line in figures(result):
            log(line)
        for phase, counts in result["outcomes"].items():
            log(f"{phase}: {dict(sorted(counts.items(), key=lambda item: -item[1]))}")
        plot(result, args.plot)
        log(f"plot: {args.plot}")
        if args.json:
            args.json.write_text(json.dumps(result))
        for server in servers:
            tracebacks = server.stderr_tail(10**7).count("Traceback")
            log(f"process {server.label}: {tracebacks} tracebacks in its log")
    finally:
        for server in servers:
            server.stop()
        proxy.cut()
        stop_redis(redis_box[0])
        infra.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
