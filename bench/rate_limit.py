#!/usr/bin/env python
"""What a request's rate-limit check costs: the shared counter on Redis against a bare Redis PING.

    REDIS_URL=redis://127.0.0.1:6379/15 python bench/rate_limit.py [--requests 20000]

In one run, round-robin so noise hits all alike: a PING through the cache's own client (one round
trip, the floor), `RateCounter.hit` (the per-key check: one pipeline), `RateCounter.peek` (the
address check before a key lookup: one MGET), and `hit` on the in-process cache (no REDIS_URL).
Prints p50/p99 in microseconds and each against the PING. Keys go under a prefix of their own and
are deleted at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenex.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.redis import RedisCache

    from workspaces.compat import redis_cache_client
    from workspaces.ratelimit import Rate, RateCounter

    prefix = f"bench-rate-{uuid.uuid4().hex[:8]}"
    redis_cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": prefix})
    client = redis_cache_client(redis_cache, prefix)
    shared, local = RateCounter(redis_cache), RateCounter(LocMemCache(prefix, {}))
    rate = Rate.parse(f"{args.requests * 10}/hour")  # never refuses: the allowed path is measured
    cases = {
        "PING (baseline)": client.ping,
        "hit, Redis": lambda: shared.hit("key:bench", rate),
        "peek, Redis": lambda: shared.peek("unauthenticated:192.0.2.1", rate),
        "hit, in-process": lambda: local.hit("key:bench", rate),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(200):  # warm-up: connections made, code paths hot
        for call in cases.values():
            call()
    for _ in range(args.requests):
        for name, call in cases.items():
            start = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - start)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)

    baseline = statistics.median(timings["PING (baseline)"])
    print(f"{args.requests} calls each, Redis at {settings.REDIS_URL}")
    print(f"{'case':<18} {'p50 µs':>8} {'p99 µs':>8} {'p50 / PING':>11}")
    for name, samples in timings.items():
        samples.sort()
        p50, p99 = statistics.median(samples), samples[int(len(samples) * 0.99) - 1]
        print(f"{name:<18} {p50 * 1e6:8.1f} {p99 * 1e6:8.1f} {p50 / baseline:11.2f}")


if __name__ == "__main__":
    main()
