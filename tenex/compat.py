"""The one place that reaches into private Django APIs; tests/test_compat.py fails loudly when an
upgrade changes them."""

from __future__ import annotations

from weakref import WeakKeyDictionary

import redis
from django.core.cache.backends.redis import RedisCache

_clients: WeakKeyDictionary[RedisCache, redis.Redis] = WeakKeyDictionary()


def redis_cache_client(cache: RedisCache, key: str) -> redis.Redis:
    """The redis-py client Django's Redis cache writes `key` with (`RedisCache._cache` is private).

    Used for a pipeline of commands in one round trip, which the public cache API cannot send.
    Django builds a new client object (over the same connection pool) for every operation, which
    costs about as much as a round trip; this one is kept per cache (Django keeps a cache per
    thread, so per thread too).
    """
    client = _clients.get(cache)
    if client is None:
        client = _clients[cache] = cache._cache.get_client(key, write=True)
    return client
