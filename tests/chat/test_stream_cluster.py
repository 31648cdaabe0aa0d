"""Everything that uses Redis, on a real Redis Cluster (3 masters, 3 replicas on loopback ports):
the stream log and its followers, the cancel mark, rate limits, and two daphne processes sharing it
through a master failing over mid-reply. The two-process tests of tests/chat/test_daphne_streams.py
(resume, cancel across processes, a killed producer) run on the cluster too."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import pytest

from chat.stream.events import make_event
from chat.stream.log import CANCEL_REQUESTED, LOG_SHARDS, RedisStreamLog, cancel_key
from tenex.redis_clients import sync_client
from tests.chat.test_daphne_streams import (
    THREADS,
    full_stream,
    headers,
    iter_events,
    start_reply,
    stream_url,
)
from tests.helpers import joined_deltas
from tests.processes import daphne_process
from workspaces.compat import RedisClusterCache
from workspaces.ratelimit import Rate, RateCounter

pytestmark = pytest.mark.slow


def deltas(message_id: str, first: int, count: int) -> list[dict]:
    return [make_event(seq, "delta", message_id=message_id, thread_id="thr", delta=f"w{seq} ")
            for seq in range(first, first + count)]


def masters_of(cluster, message_ids: list[str]) -> set[int]:
    return {cluster.master_of(RedisStreamLog.key(message_id)) for message_id in message_ids}


def test_one_follower_reads_logs_on_every_master(redis_cluster):
    """Readers of logs spread over every master and many slots, on one event loop: each gets its
    log's events (a multi-key XREAD across slots would fail with CROSSSLOT)."""
    ids = [f"msg_{uuid.uuid4().hex}" for _ in range(40)]
    assert len(masters_of(redis_cluster, ids)) == redis_cluster.masters
    assert len({RedisStreamLog.key(message_id).split("}")[0] for message_id in ids}) > LOG_SHARDS / 4

    async def scenario():
        reader = RedisStreamLog(redis_cluster.url, mirror_seconds=0)
        writer = RedisStreamLog(redis_cluster.url, mirror_seconds=0)
        assert await writer.append_many([(m, deltas(m, 1, 2)) for m in ids]) == [True] * len(ids)
        assert [len(await reader.read(m, 0, block_seconds=0)) for m in ids] == [2] * len(ids)
        waits = [asyncio.ensure_future(reader.read(m, 2, block_seconds=15)) for m in ids]
        await asyncio.sleep(0.3)  # every reader waits in Redis now
        started = time.monotonic()
        assert await writer.append_many([(m, deltas(m, 3, 1)) for m in ids]) == [True] * len(ids)
        got = await asyncio.gather(*waits)
        assert time.monotonic() - started < 10  # woken by the append, not by the block's end
        assert [[event["seq"] for event in events] for events in got] == [[3]] * len(ids)
        assert await writer.append(ids[0], deltas(ids[0], 3, 1)) is False  # refused: seq 3 is taken
        assert await writer.text_through(ids[0], 3) == len("w1 w2 w3 ")

    asyncio.run(scenario())


def test_an_append_hears_of_a_cancel_mark_in_its_slot(redis_cluster):
    message_id = f"msg_{uuid.uuid4().hex}"
    client = sync_client(redis_cluster.url)
    client.set(cancel_key(message_id), "1", ex=60)

    async def scenario():
        log = RedisStreamLog(redis_cluster.url, mirror_seconds=0)
        return await log.append(message_id, deltas(message_id, 1, 1))

    assert asyncio.run(scenario()) == CANCEL_REQUESTED


def test_rate_limits_and_the_cache_on_a_cluster(redis_cluster):
    cache = RedisClusterCache([redis_cluster.url], {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    counter = RateCounter(cache=cache)
    rate = Rate(limit=3, period=60)
    assert [counter.hit("key-a", rate) is None for _ in range(4)] == [True, True, True, False]
    assert counter.peek("key-a", rate) is not None and counter.peek("key-b", rate) is None
    # Django's cache API across slots, as django-axes and the rest of Django use it.
    values = {f"k{i}": i for i in range(20)}
    cache.set_many(values, timeout=60)
    assert cache.get_many(list(values)) == values
    assert cache.add("k0", 5) is False and cache.incr("k1") == 2 and cache.touch("k2", 30)
    cache.delete_many(list(values))
    assert cache.get_many(list(values)) == {}


@pytest.fixture
def cluster_servers(redis_cluster, django_db_blocker):
    with daphne_process(REDIS_URL=redis_cluster.url) as (a, _), daphne_process(REDIS_URL=redis_cluster.url) as (b, _):
        yield a, b



@pytest.fixture
def thread_id(alice):
    return alice.client.post(THREADS, {"title": "cluster"}, format="json").json()["id"]


def carry_a_reply_through(cluster, servers, alice, thread_id: str, fail_over, *, seamless: bool) -> dict:
    """Stream a long reply to a reader in the producing process and one in the other; call
    `fail_over(master of the reply's log)` once both have four events; check that both end with
    every word and return the stored reply. `seamless`: every event comes from the log (ids
    1, 2, 3…); otherwise a reader may get what the log lost as one delta from the stored message,
    and the ending with the reply's own number (ids still increase)."""
    a, b = servers
    reply_id = start_reply(a, alice.key, thread_id, "Tell me everything about our pricing")
    key = RedisStreamLog.key(reply_id)
    master = cluster.master_of(key)
    streams: dict[str, list[dict]] = {}
    halfway = {base: threading.Event() for base in (a, b)}

    def read(base: str) -> None:
        with httpx.stream("GET", stream_url(base, thread_id, reply_id), headers=headers(alice.key), timeout=60) as r:
            streams[base] = []
            for event in iter_events(r):
                streams[base].append(event)
                if len(streams[base]) == 4:
                    halfway[base].set()

    readers = [threading.Thread(target=read, args=(base,)) for base in (a, b)]
    for reader in readers:
        reader.start()
    try:
        for event in halfway.values():
            assert event.wait(20)
        seen_before = {base: list(streams[base]) for base in (a, b)}
        fail_over(master)
        cluster.wait_for(lambda: cluster.master_of(key) != master, "no failover")
    finally:
        for reader in readers:
            reader.join(60)
    stored = next(
        m for m in httpx.get(f"{a}{THREADS}/{thread_id}/messages", headers=headers(alice.key)).json()["results"]
        if m["id"] == reply_id
    )
    for base in (a, b):
        events = streams[base]
        ids = [e["id"] for e in events]
        assert ids == list(range(1, len(events) + 1)) if seamless else ids == sorted(set(ids)), ids
        assert events[-1]["event"] in ("done", "error")
        assert events[-1]["data"]["message"] == stored
        assert joined_deltas(events) == stored["content"]
        # Mid-reply: the reply had more to say when the failover began, and every reader got it.
        assert len(joined_deltas(seen_before[base])) < len(stored["content"])
    # The next reply works.
    next_id = start_reply(b, alice.key, thread_id)
    events = full_stream(a, alice.key, thread_id, next_id)
    assert events[-1]["event"] == "done" and joined_deltas(events) == events[-1]["data"]["message"]["content"]
    return stored


@pytest.mark.django_db(transaction=True)
def test_a_master_failing_over_mid_reply_loses_no_text(redis_cluster, cluster_servers, alice, thread_id):
    """A planned failover (`CLUSTER FAILOVER` on the replica of the master serving the reply's
    log) costs the reply nothing: it completes, and both readers get every word."""

    assert httpx.get(f"{cluster_servers[0]}/readyz").json()["checks"]["stream_store"] == "ok"

    def fail_over(master: int) -> None:
        redis_cluster.node(redis_cluster.replica_of(master)).execute_command("CLUSTER FAILOVER")

    stored = carry_a_reply_through(redis_cluster, cluster_servers, alice, thread_id, fail_over, seamless=True)
    assert stored["status"] == "complete"
    redis_cluster.wait_until_ok()


@pytest.mark.django_db(transaction=True)
def test_a_master_killed_mid_reply_loses_no_text(redis_cluster, cluster_servers, alice, thread_id):
    """The master serving the reply's log is killed: its replica takes over after the node
    timeout. The reply completes, or ends `failed` (`stream_unavailable`) if its appends could not
    wait that long; either way both readers end with every word the stored reply holds."""
    killed = []

    def fail_over(master: int) -> None:
        redis_cluster.kill_node(master)
        killed.append(master)

    try:
        stored = carry_a_reply_through(redis_cluster, cluster_servers, alice, thread_id, fail_over, seamless=False)
        assert stored["status"] == "complete" or stored["error"]["code"] == "stream_unavailable", stored
    finally:
        for port in killed:  # back, as a replica of the promoted one: the cluster is whole again
            redis_cluster.start_node(port)
        redis_cluster.wait_until_ok()
