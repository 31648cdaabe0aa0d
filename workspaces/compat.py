"""The one place tenex reaches into private Django APIs (the model and cache internals below;
tests/workspaces/test_compat.py fails loudly when an upgrade changes what it relies on).

`Model.save()` updates an existing row with `UPDATE … WHERE id = …`: `_do_update` is the only hook
between Django building that queryset and running it. Tenant models narrow it to their workspace,
so a save names the workspace like every other tenant query (one shard under Citus; see
docs/scaling.md). A row's workspace never changes (row-level security refuses the move), so the
narrowing finds exactly the row the primary key does.

Deleting through Django's `Collector` (what `Model.delete()` and `QuerySet.delete()` use) finds
cascaded rows with `WHERE thread_id IN (…)` and deletes collected rows with `WHERE id IN (…)`.
`WorkspaceCollector` narrows both to the workspaces of the rows being deleted; tenant models and
their querysets delete through it.

`redis_cache_client` is the redis-py client behind Django's Redis cache (`RedisCache._cache`), for
pipelines the public cache API cannot send (the rate limits).

`RedisClusterCache` is Django's Redis cache over a Redis Cluster (REDIS_URL `redis+cluster://…`):
Django's `RedisCache` with its client class (`RedisCache._class`, private) replaced by one that
hands out redis-py's `RedisCluster` instead of a connection pool per server, and that splits the
few multi-key operations by slot. Everything else (keys, timeouts, serialization) stays Django's.

`connection_pool` is the psycopg pool Django's PostgreSQL backend keeps for a connection
(`DatabaseWrapper.pool`, undocumented), which the pooled backend (tenex.postgresql) hands to the
database breaker so it can drop dead idle connections when PostgreSQL goes away. That backend also
relies on Django's `get_new_connection` taking one connection from that pool, waiting at most the
pool's `timeout`.

`prefetched` reads what `prefetch_related` stored on an instance, so code that lists a related set
can use it when present and otherwise ask with a workspace-scoped query of its own; `set_prefetched`
stores rows already known (just written) the same way, so serializing them needs no query.

Beyond the model API: `forget_resource_closer` takes a closer off a response (Django runs a
response's closers when it closes), and `register_before_thread_pools_close` runs a function at
interpreter exit before `concurrent.futures` refuses new work (CPython's `threading._register_atexit`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from weakref import WeakKeyDictionary

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.db import models, router
from django.db.models import signals
from django.db.models.deletion import Collector
from django.http import HttpResponseBase

from tenex.redis_clients import shared_sync_client

DO_UPDATE_PARAMETERS = ("self", "base_qs", "using", "pk_val", "values", "update_fields", "forced_update")


def has_workspace(model) -> bool:
    return any(field.attname == "workspace_id" for field in model._meta.concrete_fields)


class WorkspaceCollector(Collector):
    """A deletion collector whose every statement on a tenant table names the workspaces concerned.

    Rows are collected from the origin's rows down their relations, so the workspaces of the rows
    being deleted are those of the rows seen on the way (cascaded rows may be loaded with their
    primary key alone, and reading their workspace_id would cost a query each).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspaces: set[str] = set()

    def note_workspaces(self, objs) -> list[str]:
        """Every workspace seen so far, with those of `objs` (instances, or a queryset the collector
        has evaluated already)."""
        self.workspaces.update(
            obj.workspace_id for obj in objs
            if has_workspace(type(obj)) and "workspace_id" not in obj.get_deferred_fields()
        )
        return sorted(self.workspaces)

    def related_objects(self, related_model, related_fields, objs):
        queryset = super().related_objects(related_model, related_fields, objs)
        workspaces = self.note_workspaces(objs)
        if has_workspace(related_model) and workspaces:
            queryset = queryset.filter(workspace_id__in=workspaces)
        return queryset

    def delete(self):
        # Rows collected one by one are deleted by primary key; a tenant model's rows (when no
        # delete signal needs the instances) go as one DELETE that names their workspaces too.
        deleted_instances = []
        for model, instances in list(self.data.items()):
            hooked = signals.pre_delete.has_listeners(model) or signals.post_delete.has_listeners(model)
            workspaces = self.note_workspaces(instances)
            if not has_workspace(model) or hooked or not instances or not workspaces:
                continue
            self.fast_deletes.append(
                model._base_manager.using(self.using).filter(
                    workspace_id__in=workspaces, pk__in=[obj.pk for obj in instances]
                )
            )
            deleted_instances.extend((model, obj) for obj in instances)
            del self.data[model]
        result = super().delete()
        for model, obj in deleted_instances:
            setattr(obj, model._meta.pk.attname, None)  # as Model.delete() leaves a deleted instance
        return result


class WorkspaceScopedSaves(models.Model):
    """Mixin for tenant models: `save()` updates `WHERE id = … AND workspace_id = …`, and
    `delete()` names the workspace in every statement it sends."""

    class Meta:
        abstract = True

    def delete(self, using=None, keep_parents=False):
        if self.pk is None:
            return super().delete(using=using, keep_parents=keep_parents)  # Django's own error
        collector = WorkspaceCollector(using=using or router.db_for_write(type(self), instance=self), origin=self)
        collector.collect([self], keep_parents=keep_parents)
        return collector.delete()

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        return super()._do_update(
            base_qs.filter(workspace_id=self.workspace_id), using, pk_val, values, update_fields, forced_update
        )


def prefetched(instance: models.Model, name: str) -> list | None:
    """The objects `prefetch_related(name)` fetched for `instance`, or None if it was not prefetched."""
    cache = getattr(instance, "_prefetched_objects_cache", None)
    if not isinstance(cache, dict) or name not in cache:
        return None
    return list(cache[name])


def set_prefetched(instance: models.Model, name: str, rows: list) -> None:
    """Store `rows` as what `prefetch_related(name)` would have fetched for `instance`: the related
    manager's `all()` then answers them without a query (rows just written, for serializing)."""
    queryset = getattr(instance, name).all()
    queryset._result_cache = list(rows)
    queryset._prefetch_done = True
    cache = getattr(instance, "_prefetched_objects_cache", None)
    if not isinstance(cache, dict):
        cache = instance._prefetched_objects_cache = {}
    cache[name] = queryset


def forget_resource_closer(response: HttpResponseBase, closer: Callable[[], None]) -> None:
    """Take `closer` off what `response.close()` will call (Django registers the request's `close`
    there); nothing happens if it is not registered."""
    closers = response._resource_closers
    if closer in closers:
        closers.remove(closer)


def register_before_thread_pools_close(function: Callable[[], None]) -> None:
    """Call `function` at interpreter exit before thread pools stop taking work.

    `concurrent.futures` refuses new work once CPython's threading shutdown hooks ran; a plain
    `atexit` hook runs after them. `threading._register_atexit` (3.9+) runs before them.
    """
    threading._register_atexit(function)


def delete_queryset(queryset: models.QuerySet) -> tuple[int, dict[str, int]]:
    """`QuerySet.delete()` through a `WorkspaceCollector` (the queryset's own checks first)."""
    if queryset.query.is_sliced or queryset.query.distinct_fields or queryset._fields is not None:
        return models.QuerySet.delete(queryset)  # Django raises its own error for these
    rows = queryset.order_by()
    rows._for_write = True
    collector = WorkspaceCollector(using=rows.db, origin=queryset)
    collector.collect(rows)
    deleted = collector.delete()
    queryset._result_cache = None  # as QuerySet.delete() leaves the queryset: to be read afresh
    return deleted


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


class RedisClusterCacheClient(RedisCacheClient):
    """Django's Redis cache client over one `RedisCluster` (shared by every thread of the process)."""

    def __init__(self, servers, serializer=None, pool_class=None, parser_class=None, **options):
        super().__init__(servers, serializer=serializer, **options)
        self._cluster_url = servers[0]
        self._cluster_options = options

    def get_client(self, key=None, *, write=False):
        return shared_sync_client(self._cluster_url, **self._cluster_options)

    def get_many(self, keys):
        keys = list(keys)
        values = self.get_client().mget_nonatomic(keys)  # one MGET per slot
        found = zip(keys, values, strict=True)
        return {key: self._serializer.loads(value) for key, value in found if value is not None}

    def set_many(self, data, timeout):
        pipeline = self.get_client().pipeline(transaction=False)  # MSET would need one slot
        for key, value in data.items():
            value = self._serializer.dumps(value)
            if timeout == 0:
                pipeline.delete(key)
            else:
                pipeline.set(key, value, ex=timeout)
        pipeline.execute()


class RedisClusterCache(RedisCache):
    """`django.core.cache.backends.redis.RedisCache` on a Redis Cluster; LOCATION: [the cluster URL]."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisClusterCacheClient


def connection_pool(wrapper):
    """The psycopg_pool ConnectionPool behind a PostgreSQL connection wrapper; None when unpooled."""
    return wrapper.pool
