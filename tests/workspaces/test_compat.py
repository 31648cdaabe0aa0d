"""What workspaces/compat.py relies on in Django's private model API: fails loudly on an upgrade
that changes it (tests/test_tenant_queries.py checks the behaviour)."""

from __future__ import annotations

import inspect
import uuid

import pytest
import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.db import models
from django.db.models.deletion import Collector

from chat.models import Thread
from tests.factories import MessageFactory, ThreadFactory
from workspaces.compat import (
    DO_UPDATE_PARAMETERS,
    WorkspaceCollector,
    connection_pool,
    prefetched,
    redis_cache_client,
)
from workspaces.tenancy import tenant_context


def test_model_do_update_keeps_its_signature():
    assert tuple(inspect.signature(models.Model._do_update).parameters) == DO_UPDATE_PARAMETERS


def test_collector_keeps_the_parts_the_workspace_collector_extends():
    assert tuple(inspect.signature(Collector.related_objects).parameters) == (
        "self", "related_model", "related_fields", "objs"
    )
    collector = WorkspaceCollector(using="default", origin=None)
    assert collector.data == {} and collector.fast_deletes == [] and collector.field_updates == {}
    assert collector.delete() == (0, {})


@pytest.mark.django_db
def test_prefetched_reads_what_prefetch_related_stored(workspace):
    message = MessageFactory(thread=ThreadFactory(workspace=workspace))
    with tenant_context(workspace.pk):
        plain = Thread.objects.for_workspace(workspace.pk).get()
        fetched = Thread.objects.for_workspace(workspace.pk).prefetch_related("messages").get()
    assert prefetched(plain, "messages") is None
    assert prefetched(fetched, "messages") == [message]


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


def test_a_pooled_connection_comes_from_the_pool_within_its_timeout():
    """Django's PostgreSQL backend keeps its psycopg pool at `DatabaseWrapper.pool`, and
    `get_new_connection` waits for one of its connections no longer than the pool's `timeout`
    (tenex.postgresql slices its waits by that)."""
    import time

    from django.db.backends.postgresql.base import DatabaseWrapper
    from psycopg_pool import ConnectionPool, PoolTimeout

    from tests.helpers import free_port

    db = {
        **settings.DATABASES["default"], "ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1",
        "PORT": str(free_port()), "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 0, "max_size": 1, "timeout": 0.3, "reconnect_timeout": 0}},
    }
    wrapper = DatabaseWrapper(db, alias=f"compat-{uuid.uuid4().hex[:8]}")
    pool = connection_pool(wrapper)
    assert isinstance(pool, ConnectionPool) and pool.timeout == 0.3
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            wrapper.get_new_connection(wrapper.get_connection_params())
        assert time.monotonic() - started < 5
    finally:
        wrapper.close_pool()
