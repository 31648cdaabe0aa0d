#!/usr/bin/env python
"""Readers of other processes' replies: tenex's shared blocking reads against one connection each.

    .venv/bin/python bench/remote_readers.py [--readers 200] [--period-ms 50] [--seconds 10]
                                             [--idle-readers 1000] [--redis-url redis://127.0.0.1:6379/13]

A reader whose reply is produced by another process waits for new events in Redis. tenex's
`RedisStreamLog.read` shares one `XREAD BLOCK` per 64 such logs (`chat/stream/follower.py`). The
baseline, measured in the same run on the same Redis, is the plain way: each reader runs its own
`XREAD BLOCK` on a connection of its own (redis.asyncio, the same pool settings), decoding the
same event JSON.

Each side runs in a fresh process and is measured twice:
1. **Waiting.** `--idle-readers` readers blocked on logs that stay quiet: VmRSS per waiting reader
   (each a task, as an SSE response's is) and Redis clients used.
2. **Following.** `--readers` logs, each appended one event every `--period-ms` by a writer thread
   in the reader's process (staggered: a tenth of the logs at a time, as replies do not tick
   together; and `--together` for all at once). CPU of the readers' thread per event received,
   and how many events arrived.

Prints both sides and tenex/baseline. Needs Redis; FLUSHes the DB it is given. `--redis-url` may
name a Redis Cluster (`redis+cluster://host:port`, see docs/scaling.md): tenex's reads are then
grouped by slot, the baseline's go through redis-py's cluster client one per reader, and the
clients are counted on every master.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def setup_django(redis_url: str) -> None:
    import django

    sys.path.insert(0, str(ROOT))
    for name in [n for n in os.environ if n.startswith(("TENEX_", "DJANGO_"))]:
        del os.environ[name]
    os.environ.update(DJANGO_SETTINGS_MODULE="tenex.settings", DJANGO_DEBUG="true", REDIS_URL=redis_url)
    django.setup()


def make_reader(side: str, redis_url: str):
    """`read(message_id, after_seq, block_seconds)` for one side."""
    from chat.stream.events import Event
    from chat.stream.log import RedisStreamLog, async_redis_client

    if side == "tenex":
        log = RedisStreamLog(redis_url, mirror_seconds=0)

        async def read_shared(message_id: str, after_seq: int, block_seconds: float):
            return await log.read(message_id, after_seq, block_seconds=block_seconds)

        return read_shared

    clients: dict = {}  # one client per event loop, as RedisStreamLog keeps them

    async def read(message_id: str, after_seq: int, block_seconds: float):
        loop = asyncio.get_running_loop()
        client = clients.get(loop) or clients.setdefault(loop, async_redis_client(redis_url))
        key = RedisStreamLog.key(message_id)
        if hasattr(client, "get_node_from_key"):  # a cluster: sent to the key's master, as tenex does
            await client.initialize()
            reply = await client.execute_command(
                "XREAD", "COUNT", 1000, "BLOCK", int(block_seconds * 1000), "STREAMS", key, f"{after_seq}-0",
                target_nodes=client.get_node_from_key(key),
            )
        else:
            reply = await client.xread({key: f"{after_seq}-0"}, count=1000, block=int(block_seconds * 1000))
        return [Event.decode(fields[b"e"]) for _stream, entries in reply or [] for _id, fields in entries]

    return read


def client_count(raw) -> int:
    """Clients connected to the server, or to every master of a cluster."""
    if not hasattr(raw, "get_primaries"):
        return len(raw.client_list())
    return sum(len(raw.client_list(target_nodes=node)) for node in raw.get_primaries())


def run_side(side: str, args) -> dict:
    """In a fresh process: both measurements for one side."""
    setup_django(args.redis_url)
    from chat.stream.events import make_event
    from chat.stream.log import RedisStreamLog
    from tenex.redis_clients import sync_client

    raw = sync_client(args.redis_url)
    raw.flushdb()
    read = make_reader(side, args.redis_url)

    async def wait_all() -> tuple[int, int, int, int]:
        await read("msg_warm", 0, 0.05)  # the pool and its first connection exist on both sides
        clients_before = client_count(raw)
        before = rss_kib()
        waits = [asyncio.ensure_future(read(f"msg_quiet{index}", 0, 60)) for index in range(args.idle_readers)]
        await asyncio.sleep(5)
        after = rss_kib()
        clients_after = client_count(raw)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        return before, after, clients_before, clients_after

    before, after, clients_before, clients_after = asyncio.run(wait_all())
    ids = [f"msg_bench{index}" for index in range(args.readers)]
    stop_at = time.monotonic() + args.seconds + 1.5

    def writer() -> None:
        async def write() -> None:
            log = RedisStreamLog(args.redis_url, mirror_seconds=0)
            seq = 0
            group = len(ids) if args.together else max(1, len(ids) // 10)
            while time.monotonic() < stop_at:
                seq += 1
                for start in range(0, len(ids), group):
                    batch = [(m, [make_event(seq, "delta", message_id=m, thread_id="thr_bench", delta="word ")])
                             for m in ids[start:start + group]]
                    await log.append_many(batch)
                    await asyncio.sleep(args.period_ms / 1000 / (len(ids) / group))

        asyncio.run(write())

    async def follow_all() -> tuple[int, float]:
        received = 0
        await asyncio.sleep(0.5)  # the writer is under way

        async def follow(message_id: str) -> None:
            nonlocal received
            after = 0
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                found = await read(message_id, after, 1.0)
                if found:
                    after = found[-1]["seq"]
                    received += len(found)

        cpu = time.thread_time()
        await asyncio.gather(*(follow(m) for m in ids))
        return received, time.thread_time() - cpu

    thread = threading.Thread(target=writer)
    thread.start()
    received, cpu = asyncio.run(follow_all())
    thread.join()

    raw.flushdb()
    return {
        "received": received, "cpu_s": cpu, "us_per_event": 1e6 * cpu / max(1, received),
        "kib_per_waiting_reader": (after - before) / args.idle_readers,
        "redis_clients_added": clients_after - clients_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--period-ms", type=float, default=50.0, help="each log gets an event this often")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle-readers", type=int, default=1000)
    parser.add_argument("--together", action="store_true", help="append to every log at the same moment")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--side", choices=("tenex", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args)))
        return
    results = {}
    for side in ("baseline", "tenex"):
        command = [sys.executable, __file__, "--side", side, *sys.argv[1:]]
        output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[side] = json.loads(output.strip().splitlines()[-1])
    base, tenex = results["baseline"], results["tenex"]
    timing = "all at once" if args.together else "staggered"
    print(f"{args.idle_readers} readers waiting on quiet logs; then {args.readers} readers following, "
          f"one event per log every {args.period_ms:g} ms ({timing}), {args.seconds:g} s")
    print(f"{'':28}{'baseline':>14}{'tenex':>14}{'tenex/baseline':>16}")
    rows = (
        ("events received", "received", "{:,.0f}"),
        ("reader CPU per event (us)", "us_per_event", "{:,.1f}"),
        ("KiB per waiting reader", "kib_per_waiting_reader", "{:,.1f}"),
        ("Redis clients while waiting", "redis_clients_added", "{:,.0f}"),
    )
    for label, key, fmt in rows:
        ratio = tenex[key] / base[key] if base[key] else float("nan")
        print(f"{label:28}{fmt.format(base[key]):>14}{fmt.format(tenex[key]):>14}{ratio:>15.2f}x")


if __name__ == "__main__":
    main()
