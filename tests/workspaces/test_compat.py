"""What workspaces/compat.py relies on in Django's private model API: fails loudly on an upgrade
that changes it (tests/test_tenant_queries.py checks the behaviour)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.db import connection, models
from django.db.models.deletion import Collector
from django.http import HttpResponse, StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from chat.models import Thread
from tests.factories import MessageFactory, ThreadFactory
from workspaces.compat import (
    DO_UPDATE_PARAMETERS,
    WorkspaceCollector,
    connection_pool,
    forget_resource_closer,
    prefetched,
    redis_cache_client,
    register_before_thread_pools_close,
    set_prefetched,
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


@pytest.mark.django_db
def test_set_prefetched_rows_are_what_the_related_manager_answers(workspace):
    thread = ThreadFactory(workspace=workspace)
    known = MessageFactory.build(thread=thread, workspace=workspace)
    with CaptureQueriesContext(connection) as queries:
        set_prefetched(thread, "messages", [known])
        assert list(thread.messages.all()) == [known]
        assert prefetched(thread, "messages") == [known]
    assert queries.captured_queries == []
    set_prefetched(thread, "messages", [])
    assert list(thread.messages.all()) == [] and prefetched(thread, "messages") == []


@pytest.mark.parametrize("response_class", [HttpResponse, StreamingHttpResponse])
def test_a_forgotten_resource_closer_is_not_called_when_the_response_closes(response_class):
    called = []
    response = response_class()
    response._resource_closers.append(lambda: called.append("kept"))  # as Django's handler registers them
    response._resource_closers.append(forgotten := lambda: called.append("forgotten"))
    forget_resource_closer(response, forgotten)
    forget_resource_closer(response, forgotten)  # not registered any more: nothing happens
    response.close()
    assert called == ["kept"]


def test_the_pre_pool_shutdown_hook_runs_while_thread_pools_still_take_work():
    assert callable(threading._register_atexit)
    script = """
import django
django.setup()
from concurrent.futures import ThreadPoolExecutor
from workspaces.compat import register_before_thread_pools_close

pool = ThreadPoolExecutor(1)
register_before_thread_pools_close(lambda: print(pool.submit(lambda: "accepted").result()))
"""
    assert register_before_thread_pools_close.__module__ == "workspaces.compat"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=root)
    assert out.stdout.strip() == "accepted", out.stderr


def test_the_cluster_cache_keeps_djangos_client_hooks():
    """RedisClusterCache swaps `RedisCache._class` and overrides `RedisCacheClient.get_client`:
    both must still be what Django's cache calls (no connection is made here)."""
    from django.core.cache.backends.redis import RedisCacheClient

    from workspaces.compat import RedisClusterCache, RedisClusterCacheClient

    assert tuple(inspect.signature(RedisCacheClient.get_client).parameters) == ("self", "key", "write")
    assert tuple(inspect.signature(RedisCacheClient.__init__).parameters)[:5] == (
        "self", "servers", "serializer", "pool_class", "parser_class"
    )
    cache = RedisClusterCache(["redis+cluster://127.0.0.1:7000"], {"OPTIONS": {"socket_timeout": 1}})
    assert type(cache._cache) is RedisClusterCacheClient
    assert cache._cache._serializer.dumps(5) == 5  # integers unpickled, so INCR works on them
    assert redis_cache_client(RedisCache(settings.REDIS_URL, {}), "a").__class__ is redis.Redis


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
