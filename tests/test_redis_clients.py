"""REDIS_URL: one server or a Redis Cluster (tenex/redis_clients.py); the cluster itself is
exercised in tests/chat/test_stream_cluster.py."""

from __future__ import annotations

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from redis.crc import key_slot

from tenex.env import check_redis_url
from tenex.redis_clients import STORE_ERRORS, check_reachable, cluster_nodes, hash_tag, is_cluster, sync_client
from tests.helpers import free_port
from workspaces.compat import RedisClusterCache
from workspaces.ratelimit import Rate, RateCounter


def test_a_cluster_url_names_its_nodes():
    assert is_cluster("redis+cluster://a:1") and is_cluster("rediss+cluster://a:1")
    assert not is_cluster("redis://a:1/0")
    assert cluster_nodes("redis+cluster://user:pw@10.0.0.1:7000,10.0.0.2:7001/0?socket_timeout=3") == (
        "redis://user:pw@10.0.0.1:7000?socket_timeout=3", [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    )
    assert cluster_nodes("rediss+cluster://[::1]:7000")[0] == "rediss://[::1]:7000"


@pytest.mark.parametrize("url", [
    "redis+cluster://10.0.0.1:7000/1",  # a cluster has database 0 only
    "redis+cluster://10.0.0.1",  # no port
    "redis+cluster://10.0.0.1:7000,",  # an empty node
    "memcached://10.0.0.1:11211",
])
def test_a_bad_url_is_refused_at_start(url):
    with pytest.raises(ImproperlyConfigured):
        check_redis_url(url)


def test_plain_urls_stay_plain_clients():
    assert check_redis_url("redis://127.0.0.1:6379/15") == "redis://127.0.0.1:6379/15"
    assert type(sync_client("redis://127.0.0.1:6379/15")) is redis.Redis


def test_hash_tags_as_redis_cluster_reads_them():
    assert hash_tag("tenex:stream:{tenex:s7}:msg_1") == "tenex:s7"
    assert hash_tag("a{}b{c}") is None  # an empty first tag: the whole key is hashed
    assert hash_tag("plain") is None
    for key in ("tenex:stream:{tenex:s7}:msg_1", "x{a}{b}", "{}{z}"):
        tag = hash_tag(key)
        assert key_slot((tag if tag is not None else key).encode()) == key_slot(key.encode())


@pytest.mark.django_db
def test_an_unreachable_cluster_leaves_the_limits_open_and_the_service_not_ready(client, settings):
    """A cluster client that reaches none of its nodes raises redis-py's cluster exception (not a
    RedisError): the rate limits still pass requests uncounted, /readyz says the store is down."""
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    cache = RedisClusterCache([url], {"OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}})
    assert RateCounter(cache=cache).hit("key", Rate(limit=1, period=60)) is None
    with pytest.raises(STORE_ERRORS):
        check_reachable(url, timeout=0.2)
    settings.REDIS_URL = url
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "stream_store": "error: RedisClusterException"}
