"""Request counters shared by every process: per API key, and per client address for requests that
fail authentication.

Counts live in Django's default cache: Redis (`django.core.cache.backends.redis.RedisCache`, or
its Redis Cluster form `workspaces.compat.RedisClusterCache`) when `REDIS_URL` is set, so every
process counts against one total; in-process otherwise (the embedded default is one process).
Each limit is a sliding window estimated from two fixed windows (the "sliding window counter"):
the current window's count plus the previous window's, weighted by how much of it still lies
inside the last `period` seconds. It never allows a burst of twice the limit
across a window's edge, and costs one round trip: on Redis, one pipeline that creates the current
window's counter with its expiry, increments it and reads the previous one.
A refused request is not counted (its increment is taken back), as DRF's throttles do.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache

from tenex.env import parse_rate
from tenex.redis_clients import STORE_ERRORS
from workspaces.compat import redis_cache_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    @classmethod
    @lru_cache(maxsize=32)
    def parse(cls, text: str) -> Rate:
        limit, period = parse_rate(text)
        return cls(limit=limit, period=period)


@dataclass(frozen=True)
class _Counts:
    previous: int
    current: int  # without the request being judged
    elapsed: float  # seconds into the current window


def _estimate(counts: _Counts, rate: Rate, extra: int) -> float:
    """Requests in the last `period` seconds, the current window's plus `extra`."""
    weight = 1 - counts.elapsed / rate.period
    return counts.previous * weight + counts.current + extra


def _wait(counts: _Counts, rate: Rate) -> float:
    """Seconds until one more request fits, if no other arrives meanwhile."""
    if counts.current + 1 <= rate.limit and counts.previous:
        # Inside this window, once enough of the previous window has slid out.
        fits_at = rate.period * (1 - (rate.limit - counts.current - 1) / counts.previous)
        return max(fits_at - counts.elapsed, 0.0)
    # In the next window, once enough of this one has slid out.
    fits_at = rate.period * (1 - (rate.limit - 1) / counts.current) if counts.current else 0.0
    return rate.period - counts.elapsed + max(fits_at, 0.0)


class RateCounter:
    """Counts requests per identity against a Rate, in one cache (the default one unless given)."""

    def __init__(self, cache: BaseCache | None = None, clock: Callable[[], float] = time.time):
        self._cache = cache
        self._clock = clock  # wall time: every process must agree on where windows start

    @property
    def cache(self) -> BaseCache:
        # The default cache is looked up per call: Django keeps one instance per thread.
        return self._cache if self._cache is not None else caches["default"]

    def _windows(self, cache: BaseCache, ident: str, rate: Rate) -> tuple[str, str, float]:
        """The keys of the current and the previous window, and the seconds into the current."""
        window, elapsed = divmod(self._clock(), rate.period)
        # `{ident}` keeps both windows in one Redis Cluster slot.
        name = f"rl:{{{ident}}}:{rate.period}:"
        current, previous = f"{name}{int(window)}", f"{name}{int(window) - 1}"
        if isinstance(cache, RedisCache):  # the raw client needs the keys as the cache makes them
            current, previous = cache.make_and_validate_key(current), cache.make_and_validate_key(previous)
        return current, previous, elapsed

    def hit(self, ident: str, rate: Rate) -> float | None:
        """Count one request; None when it is allowed, else the seconds to wait (it is not counted)."""
        try:
            return self._hit(self.cache, ident, rate)
        except STORE_ERRORS as exc:
            # A limit is a guard, not the service: while Redis is unreachable requests go uncounted.
            logger.warning("rate limit not counted, Redis unreachable: %s", exc)
            return None

    def peek(self, ident: str, rate: Rate) -> float | None:
        """Whether one more request would be allowed, without counting it: None, or seconds to wait."""
        try:
            return self._peek(self.cache, ident, rate)
        except STORE_ERRORS as exc:
            logger.warning("rate limit not read, Redis unreachable: %s", exc)
            return None

    def _hit(self, cache: BaseCache, ident: str, rate: Rate) -> float | None:
        current_key, previous_key, elapsed = self._windows(cache, ident, rate)
        if isinstance(cache, RedisCache):
            client = redis_cache_client(cache, current_key)
            pipeline = client.pipeline(transaction=False)
            pipeline.set(current_key, 0, ex=2 * rate.period, nx=True)
            pipeline.incr(current_key)
            pipeline.get(previous_key)
            _, count, previous = pipeline.execute()
        else:
            # In-process caches (LocMemCache) run add and incr under their own lock.
            cache.add(current_key, 0, timeout=2 * rate.period)
            count = cache.incr(current_key)
            previous = cache.get(previous_key)
        counts = _Counts(previous=int(previous or 0), current=int(count) - 1, elapsed=elapsed)
        if _estimate(counts, rate, 1) <= rate.limit:
            return None
        if isinstance(cache, RedisCache):
            client.decr(current_key)
        else:
            cache.decr(current_key)
        return _wait(counts, rate)

    def _peek(self, cache: BaseCache, ident: str, rate: Rate) -> float | None:
        current_key, previous_key, elapsed = self._windows(cache, ident, rate)
        if isinstance(cache, RedisCache):
            count, previous = redis_cache_client(cache, current_key).mget([current_key, previous_key])
        else:
            found = cache.get_many([current_key, previous_key])
            count, previous = found.get(current_key), found.get(previous_key)
        counts = _Counts(previous=int(previous or 0), current=int(count or 0), elapsed=elapsed)
        if _estimate(counts, rate, 1) <= rate.limit:
            return None
        return _wait(counts, rate)


def retry_after(wait: float) -> int:
    """A wait as the whole seconds of a `Retry-After` header (at least 1)."""
    return max(1, math.ceil(wait))


# --- Client address ----------------------------------------------------------------------------------
def client_address(request) -> str | None:
    """The address a request came from, as rate limits and login throttling count it.

    `REMOTE_ADDR` by default. Behind `TENEX_TRUSTED_PROXY_COUNT` proxies that each append to
    `X-Forwarded-For`, the address the outermost of them saw: that many entries from the header's
    right end (entries further left are the client's own claims and are ignored). IPv6 addresses
    count by their /64 network, which one client usually holds whole.
    """
    meta = request.META
    address = meta.get("REMOTE_ADDR")
    proxies = settings.TENEX_TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
