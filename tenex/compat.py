"""The one place that reaches into private Django APIs; tests/test_compat.py fails loudly when an
upgrade changes them."""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache


def redis_cache_client(cache: RedisCache, key: str):
    """The redis-py client Django's Redis cache writes `key` with (`RedisCache._cache` is private).

    Used for a pipeline of commands in one round trip, which the public cache API cannot send.
    """
    return cache._cache.get_client(key, write=True)
