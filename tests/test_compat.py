"""The private Django APIs tenex.compat reaches into: these fail loudly when an upgrade changes them."""

from __future__ import annotations

import uuid

import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache

from tenex.compat import redis_cache_client


def test_redis_cache_client_writes_what_the_cache_reads():
    cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": f"test-compat-{uuid.uuid4().hex}"})
    key = cache.make_and_validate_key("counter")
    client = redis_cache_client(cache, key)
    assert isinstance(client, redis.Redis)
    try:
        # Integers are stored unpickled, so INCR on a raw key and the cache's get agree.
        assert client.incr(key) == 1
        assert cache.get("counter") == 1
        cache.incr("counter")
        assert int(client.get(key)) == 2
    finally:
        cache.delete("counter")


def test_one_client_is_kept_per_cache():
    cache = RedisCache(settings.REDIS_URL, {})
    assert redis_cache_client(cache, "a") is redis_cache_client(cache, "b")
    assert redis_cache_client(RedisCache(settings.REDIS_URL, {}), "a") is not redis_cache_client(cache, "a")
