"""Every Redis client of the project, built from REDIS_URL: one Redis server, or a Redis Cluster.

`redis://host:port/db` (or `rediss://`, `unix://`) names one server. `redis+cluster://host:port`
(or `rediss+cluster://`) names a Redis Cluster by one or more of its nodes, comma-separated
(`redis+cluster://10.0.0.1:6379,10.0.0.2:6379`); the client learns the rest from them. A cluster
has database 0 only, so its URL names no other; `?…` options apply as for a single server.

Keys that one command or script touches together are hash-tagged into one slot by their callers
(`chat/stream/log.py`, the rate limits); `hash_tag` is how the follower groups its reads by slot.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# What a store that cannot answer raises: redis-py's errors, and its cluster client's own (a cluster
# none of whose named nodes answers, a slot no master serves yet while one fails over), which do not
# derive from RedisError.
STORE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, redis.exceptions.RedisClusterException)


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL as the plain URL of its first node (options kept) and every node it names.

    Raises ValueError for a URL that names no node, a node without a port, or a database but 0.
    """
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL: {url!r}")
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for address in hosts.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"each node of a cluster URL is host:port, got {address!r}")
        nodes.append((host.strip("[]"), int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only")
    first_host, first_port = nodes[0]
    host = f"[{first_host}]" if ":" in first_host else first_host
    netloc = f"{credentials}@{host}:{first_port}" if credentials else f"{host}:{first_port}"
    return urlunsplit((CLUSTER_SCHEMES[parts.scheme], netloc, "", parts.query, "")), nodes


def hash_tag(key: str) -> str | None:
    """The part of `key` Redis Cluster hashes when it has one (`{…}`, first and non-empty), else None."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


def sync_client(url: str, **options: Any):
    """A new synchronous client: `redis.Redis`, or `redis.cluster.RedisCluster` for a cluster URL."""
    from redis.cluster import ClusterNode, RedisCluster

    if not is_cluster(url):
        return redis.Redis.from_url(url, **options)
    first, nodes = cluster_nodes(url)
    return RedisCluster.from_url(first, startup_nodes=[ClusterNode(h, p) for h, p in nodes[1:]], **options)


def async_client(url: str, **options: Any):
    """A new redis.asyncio client for the calling event loop: `Redis`, or `RedisCluster` for a
    cluster URL (`max_connections` is per node there)."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    if not is_cluster(url):
        return aioredis.Redis.from_url(url, **options)
    options.pop("single_connection_client", None)  # a cluster client holds a pool per node
    first, nodes = cluster_nodes(url)
    return RedisCluster.from_url(first, startup_nodes=[ClusterNode(h, p) for h, p in nodes[1:]], **options)


async def ready_async_client(url: str, **options: Any):
    """`async_client`, a cluster one having learnt the cluster's layout (its pub/sub needs that)."""
    client = async_client(url, **options)
    if is_cluster(url):
        await client.initialize()
    return client


def check_reachable(url: str, timeout: float) -> None:
    """Raise unless the store answers: the server, or every master of a cluster that serves all
    its slots (a cluster client refuses to start on one that does not)."""
    if not is_cluster(url):
        client = sync_client(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return
    from redis.cluster import RedisCluster

    client = shared_sync_client(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    client.ping(target_nodes=RedisCluster.PRIMARIES)


_shared: dict[tuple, Any] = {}
_shared_lock = threading.Lock()


def shared_sync_client(url: str, **options: Any):
    """One synchronous client per URL and options for the whole process (redis-py's clients are
    thread-safe): a cluster client learns the cluster's layout once, not per thread or request."""
    key = (url, tuple(sorted(options.items())))
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = sync_client(url, **options)
        return client
