"""The event log against real Redis: batched appends are all-or-nothing, the local mirror is exact,
readers ride out a Redis restart."""

from __future__ import annotations

import asyncio
import time
import uuid

import anyio
import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from chat.stream.events import encode_sse, make_event
from chat.stream.log import MemoryStreamLog, RedisStreamLog
from tests.helpers import free_port, parse_sse, streamed_body
from tests.processes import redis_server


def events(message_id: str, first: int, last: int, kind: str = "delta") -> list[dict]:
    return [make_event(seq, kind, message_id=message_id, thread_id="thr_x", delta=f"w{seq} ")
            for seq in range(first, last + 1)]


@pytest.fixture
def message_id() -> str:
    return f"msg_test{uuid.uuid4().hex}"


@pytest.fixture
def raw_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def stored_seqs(raw_redis, message_id: str) -> list[int]:
    return [int(entry_id.split(b"-")[0]) for entry_id, _ in raw_redis.xrange(RedisStreamLog.key(message_id))]


def test_a_batch_is_appended_whole_or_refused_whole(message_id, raw_redis):
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)

    async def scenario():
        assert await log.append(message_id, events(message_id, 1, 3))
        # Overlaps seq 3: refused whole, so seq 4 and 5 are not written either.
        assert not await log.append(message_id, events(message_id, 3, 5))
        assert await log.append(message_id, events(message_id, 4, 6))
        return await log.read(message_id, 0, block_seconds=0)

    read = asyncio.run(scenario())
    assert [event["seq"] for event in read] == [1, 2, 3, 4, 5, 6]
    assert stored_seqs(raw_redis, message_id) == [1, 2, 3, 4, 5, 6]
    assert 0 < raw_redis.ttl(RedisStreamLog.key(message_id)) <= settings.TENEX_STREAM_TTL_SECONDS


def test_an_event_is_encoded_once_and_every_reader_sends_that_text(message_id, raw_redis):
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=30)
    sent = events(message_id, 1, 2) + [
        make_event(3, "done", message_id=message_id, thread_id="thr_x", message={"content": "w1 w2 \u00e9 \u2014"})
    ]
    wire = [encode_sse(event) for event in sent]

    async def scenario():
        assert await log.append(message_id, sent)
        mirrored = await log.read(message_id, 0, block_seconds=0)
        from_redis = await RedisStreamLog(settings.REDIS_URL, mirror_seconds=0).read(message_id, 0, block_seconds=0)
        return mirrored, from_redis

    mirrored, from_redis = asyncio.run(scenario())
    stored = [fields[b"e"].decode() for _id, fields in raw_redis.xrange(RedisStreamLog.key(message_id))]
    assert stored == [event.text() for event in sent]  # Redis holds the text SSE readers send
    assert mirrored == from_redis == sent
    assert [encode_sse(event) for event in mirrored] == [encode_sse(event) for event in from_redis] == wire
    # The contract's spelling, non-ASCII text as is.
    assert wire[0].startswith(b'id: 1\nevent: delta\ndata: {"seq": 1, "type": "delta", ')
    assert "\u00e9 \u2014".encode() in wire[2]


def test_the_mirror_serves_what_redis_holds_and_only_whole_logs(message_id, raw_redis):
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=30)
    other = f"{message_id}b"

    async def scenario():
        await log.append(message_id, events(message_id, 1, 4))
        # A log this process did not start (another producer's, ended here): never mirrored.
        raw_redis.xadd(RedisStreamLog.key(other), {"e": "{}"}, id="1-0")
        await log.append(other, events(other, 2, 2, kind="done"))
        mirrored = await log.read(message_id, 1, block_seconds=0)
        from_redis = await RedisStreamLog(settings.REDIS_URL, mirror_seconds=0).read(message_id, 1, block_seconds=0)
        return mirrored, from_redis

    mirrored, from_redis = asyncio.run(scenario())
    assert mirrored == from_redis == events(message_id, 2, 4)
    assert log.mirror.has(message_id)
    assert not log.mirror.has(other)
    raw_redis.delete(RedisStreamLog.key(other))


def test_a_refused_append_sends_local_readers_to_redis(message_id, raw_redis):
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=30)

    async def scenario():
        await log.append(message_id, events(message_id, 1, 2))
        # Another process ends the message at seq 3 (as the orphan sweep does); our seq 3 is refused.
        other_process = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
        assert await other_process.append(message_id, events(message_id, 3, 3, kind="error"))
        assert not await log.append(message_id, events(message_id, 3, 4))
        return await log.read(message_id, 2, block_seconds=0)

    after = asyncio.run(scenario())
    assert not log.mirror.has(message_id)
    assert [(event["seq"], event["type"]) for event in after] == [(3, "error")]


def test_a_blocked_mirror_reader_wakes_on_append_and_on_drop():
    log = MemoryStreamLog(ttl_seconds=30)

    async def scenario():
        log.append_now("m", events("m", 1, 1))
        woken = asyncio.create_task(log.read("m", 1, block_seconds=5))
        await asyncio.sleep(0.05)
        log.append_now("m", events("m", 2, 3))
        first = await asyncio.wait_for(woken, 1)
        dropped = asyncio.create_task(log.read("m", 3, block_seconds=5))
        await asyncio.sleep(0.05)
        log.drop("m")
        second = await asyncio.wait_for(dropped, 1)
        return first, second

    first, second = asyncio.run(scenario())
    assert [event["seq"] for event in first] == [2, 3]
    assert second == []
    assert not log.has("m")


def test_finished_memory_logs_expire_after_their_ttl():
    log = MemoryStreamLog(ttl_seconds=0.05)
    log.EXPIRY_CHECK_SECONDS = 0

    async def scenario():
        log.append_now("m", events("m", 1, 2, kind="done"))
        await log.finish("m")
        assert await log.exists("m")
        await asyncio.sleep(0.1)
        return await log.exists("m")

    assert asyncio.run(scenario()) is False


def test_readers_behind_the_mirrors_window_are_served_from_redis(message_id, monkeypatch):
    monkeypatch.setattr(RedisStreamLog, "MIRROR_EVENTS", 64)  # a window 300 events outgrow
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=30)

    async def scenario():
        for first in range(1, 301, 10):
            assert await log.append(message_id, events(message_id, first, first + 9))
        from_start = []
        while len(from_start) < 300:
            from_start += await log.read(message_id, len(from_start), block_seconds=0)
        tail = await log.read(message_id, 290, block_seconds=0)
        return from_start, tail

    from_start, tail = asyncio.run(scenario())
    assert [event["seq"] for event in from_start] == list(range(1, 301))
    assert tail == events(message_id, 291, 300)
    held = log.mirror._events[message_id]
    assert len(held) <= 2 * 64 and held[-1]["seq"] == 300


def test_the_mirror_forgets_old_batches_of_a_slow_reply_and_redis_serves_them(message_id, monkeypatch):
    monkeypatch.setattr(RedisStreamLog, "MIRROR_SECONDS", 0.2)
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=30)

    async def scenario():
        assert await log.append(message_id, events(message_id, 1, 3))
        assert await log.append(message_id, events(message_id, 4, 4))
        recent = [event["seq"] for event in log.mirror._events[message_id]]
        await asyncio.sleep(0.3)  # a slow provider's next token
        assert await log.append(message_id, events(message_id, 5, 5))
        held = [event["seq"] for event in log.mirror._events[message_id]]
        # The local follower (at 4) is served from memory; a reader from the start, from Redis.
        follower = await log.mirror.read_held(message_id, 4, block_seconds=0)
        behind = await log.mirror.read_held(message_id, 0, block_seconds=0)
        from_start = await log.read(message_id, 0, block_seconds=0)
        await asyncio.sleep(0.3)
        assert await log.append(message_id, events(message_id, 6, 6))
        return recent, held, follower, behind, from_start, [event["seq"] for event in log.mirror._events[message_id]]

    recent, held, follower, behind, from_start, later = asyncio.run(scenario())
    assert recent == [1, 2, 3, 4]  # young batches stay
    assert held == [5]
    assert follower == events(message_id, 5, 5)
    assert behind is None
    assert from_start == events(message_id, 1, 5)
    assert later == [6]  # the newest batch always stays, however old the one before


def test_append_many_answers_each_batch_on_its_own(message_id):
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=30)
    other = f"{message_id}b"

    async def scenario():
        await log.append(message_id, events(message_id, 1, 2))
        return await log.append_many(
            [(message_id, events(message_id, 2, 3)), (other, events(other, 1, 2)), (message_id, [])]
        )

    assert asyncio.run(scenario()) == [False, True, True]
    assert not log.mirror.has(message_id)  # refused: local readers now go to Redis
    assert log.mirror.has(other)
    redis.Redis.from_url(settings.REDIS_URL).delete(RedisStreamLog.key(other))


def test_many_replies_go_in_one_call_and_one_that_fails_part_way_loses_nothing(message_id, raw_redis):
    """A round's batches share one script call; when Redis fails it part-way, the batches written
    before the failure count as appended when they are sent again, not as taken by someone else."""
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    first, broken, last = message_id, f"{message_id}b", f"{message_id}c"
    raw_redis.set(RedisStreamLog.key(broken), "not a stream")  # XREVRANGE on it fails the call there
    batches = [(first, events(first, 1, 2)), (broken, events(broken, 1, 1)), (last, events(last, 1, 1))]

    async def scenario():
        calls_before = int(raw_redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        failed = await log.append_many(batches)
        calls = int(raw_redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)) - calls_before
        raw_redis.delete(RedisStreamLog.key(broken))
        return calls, failed, await log.append_many(batches)

    calls, failed, retried = asyncio.run(scenario())
    assert calls == 1
    assert all(isinstance(result, redis.exceptions.ResponseError) for result in failed)
    assert retried == [True, True, True]
    assert [stored_seqs(raw_redis, m) for m in (first, broken, last)] == [[1, 2], [1], [1]]
    # A batch refused because its seqs hold other events is still refused.
    assert asyncio.run(log.append(first, events(first, 2, 2, kind="done"))) is False
    raw_redis.delete(*(RedisStreamLog.key(m) for m in (first, broken, last)))


def test_an_expected_reply_is_awaited_locally_until_abandoned():
    log = MemoryStreamLog(ttl_seconds=30, keep_last=64)

    async def scenario():
        assert await log.read_held("m", 0, block_seconds=0) is None  # not produced here: ask Redis
        log.expect("m")
        assert await log.read_held("m", 0, block_seconds=0) == []  # produced here: wait for it here
        assert not await log.exists("m")
        waiting = asyncio.create_task(log.read_held("m", 0, block_seconds=5))
        await asyncio.sleep(0.05)
        log.abandon("m")  # another process ended it before this one produced anything
        return await asyncio.wait_for(waiting, 1)

    assert asyncio.run(scenario()) is None


@pytest.mark.django_db(transaction=True)
def test_the_post_that_streams_its_reply_never_reads_redis(alice, settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 0
    client = redis.Redis.from_url(settings.REDIS_URL)
    thread = alice.client.post("/api/v1/chat/threads", {}, format="json").json()

    def xreads() -> int:
        return int(client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0))

    before = xreads()
    sent = alice.client.post(
        f"/api/v1/chat/threads/{thread['id']}/messages", {"content": "Hello"}, format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    events = parse_sse(streamed_body(sent))
    assert events[-1]["event"] == "done"
    assert xreads() == before
    # The append that wrote the ending set the log's lifetime: at least 24 h from the end.
    ttl = client.ttl(RedisStreamLog.key(events[-1]["data"]["message_id"]))
    assert 24 * 3600 <= ttl <= settings.TENEX_STREAM_TTL_SECONDS
    client.close()


def test_a_reader_rides_out_redis_coming_back(tmp_path):
    """While Redis is down a read answers None (unreachable) within its wait; once it is back, the
    same reader's next read finds the events."""
    from chat.stream import sse

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    message_id = "msg_retry"

    async def scenario():
        log = RedisStreamLog(url, mirror_seconds=0)
        assert await sse._read(log, message_id, 0, 0.5) is None
        with redis_server(port, str(tmp_path)):
            writer = RedisStreamLog(url, mirror_seconds=0)
            await writer.append(message_id, events(message_id, 1, 2))
            found: list = []
            deadline = time.monotonic() + 10
            while len(found) < 2 and time.monotonic() < deadline:
                found += await sse._read(log, message_id, len(found), 0.2) or []
            return found

    assert [event["seq"] for event in asyncio.run(scenario())] == [1, 2]


def test_a_read_of_an_unreachable_log_answers_none_at_once():
    from chat.stream import sse

    log = RedisStreamLog(f"redis://127.0.0.1:{free_port()}/0", mirror_seconds=0)
    assert asyncio.run(sse._read(log, "msg_down", 0, 0)) is None


def test_appends_survive_redis_forgetting_the_append_script(message_id, raw_redis):
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    other = f"{message_id}b"

    async def scenario():
        assert await log.append(message_id, events(message_id, 1, 2))
        raw_redis.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
        assert await log.append(message_id, events(message_id, 3, 4))  # a lone append
        raw_redis.script_flush()
        return await log.append_many([(message_id, events(message_id, 5, 5)), (other, events(other, 1, 1))])

    assert asyncio.run(scenario()) == [True, True]
    assert stored_seqs(raw_redis, message_id) == [1, 2, 3, 4, 5]
    assert stored_seqs(raw_redis, other) == [1]
    raw_redis.delete(RedisStreamLog.key(other))


def test_text_through_counts_delta_text_only_while_the_log_holds_every_event(message_id, raw_redis):
    redis_log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    memory_log = MemoryStreamLog()
    written = (
        [make_event(1, "tool_call", message_id=message_id, thread_id="thr_x", tool_call={"id": "call_1"})]
        + [make_event(seq, "delta", message_id=message_id, thread_id="thr_x", delta="é" * seq)
           for seq in range(2, 1503)]
    )

    async def scenario(log):
        assert await log.append(message_id, written)
        # 1,500 deltas of 2..1502 characters: more than one page of Redis entries.
        return [await log.text_through(message_id, seq) for seq in (1, 2, 3, 1200, 1502, 1503)]

    expected = [0, 2, 5, sum(range(2, 1201)), sum(range(2, 1503)), None]  # 1503 was never written
    assert asyncio.run(scenario(redis_log)) == expected
    assert asyncio.run(scenario(memory_log)) == expected
    raw_redis.xdel(RedisStreamLog.key(message_id), "700-0")  # lost, as after a failover
    assert asyncio.run(redis_log.text_through(message_id, 699)) == sum(range(2, 700))
    assert asyncio.run(redis_log.text_through(message_id, 700)) is None
    assert asyncio.run(redis_log.text_through(message_id, 1200)) is None
    assert asyncio.run(redis_log.text_through(f"{message_id}gone", 3)) is None
    assert asyncio.run(memory_log.text_through(f"{message_id}gone", 3)) is None
    trimmed = MemoryStreamLog(keep_last=100)  # holds only the newest events, as a mirror does
    asyncio.run(trimmed.append(message_id, written))
    assert asyncio.run(trimmed.text_through(message_id, 1502)) is None
    raw_redis.delete(RedisStreamLog.key(message_id))


def test_readers_of_other_processes_replies_share_a_few_connections(raw_redis):
    """200 readers wait at once on 200 logs this process does not produce: a handful of Redis
    connections serve them all, and each gets exactly its own log's new events."""
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    writer = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    ids = [f"msg_share{uuid.uuid4().hex}" for _ in range(200)]

    async def scenario():
        await writer.append("msg_warm", events("msg_warm", 1, 1))  # the writer's own connection first
        before = len(raw_redis.client_list())
        reads = [asyncio.ensure_future(log.read(message_id, 0, block_seconds=30)) for message_id in ids]
        await asyncio.sleep(0.5)  # every reader is waiting
        during = len(raw_redis.client_list())
        assert not any(read.done() for read in reads)
        await writer.append_many([(message_id, events(message_id, 1, 2)) for message_id in ids])
        found = await asyncio.wait_for(asyncio.gather(*reads), 10)
        return during - before, found

    extra_connections, found = asyncio.run(scenario())
    assert extra_connections <= 200 // 64 + 3, extra_connections
    for message_id, got in zip(ids, found, strict=True):
        assert [(event["seq"], event["message_id"]) for event in got] == [(1, message_id), (2, message_id)]
    raw_redis.delete(*[RedisStreamLog.key(message_id) for message_id in [*ids, "msg_warm"]])


def test_a_reader_joining_a_blocked_read_is_not_kept_waiting(message_id, raw_redis):
    """A wait for a log (or an older position) that the shard's running XREAD BLOCK does not cover
    is answered at once, not after that read's block runs out."""
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    writer = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    quiet, other = f"{message_id}q", f"{message_id}o"

    async def timed(coroutine):
        started = asyncio.get_running_loop().time()
        result = await coroutine
        return result, asyncio.get_running_loop().time() - started

    async def scenario():
        await writer.append(message_id, events(message_id, 1, 5))
        waiting = asyncio.ensure_future(log.read(quiet, 0, block_seconds=30))  # nothing comes for it
        ahead = asyncio.ensure_future(log.read(message_id, 5, block_seconds=30))  # waits for seq 6
        await asyncio.sleep(0.3)  # the shard's read is blocked in Redis now
        behind = await timed(log.read(message_id, 2, block_seconds=30))  # 3..5 exist already
        later = asyncio.ensure_future(timed(log.read(other, 0, block_seconds=30)))
        await asyncio.sleep(0.3)
        await writer.append(other, events(other, 1, 1))
        joined = await asyncio.wait_for(later, 5)
        await writer.append(message_id, events(message_id, 6, 6))
        ahead_found = await asyncio.wait_for(ahead, 5)
        assert not waiting.done()
        waiting.cancel()
        return behind, joined, ahead_found

    (behind, behind_s), (joined, joined_s), ahead_found = asyncio.run(scenario())
    assert [event["seq"] for event in behind] == [3, 4, 5] and behind_s < 2
    assert [event["seq"] for event in joined] == [1] and joined_s < 2
    assert [event["seq"] for event in ahead_found] == [6]
    raw_redis.delete(*[RedisStreamLog.key(m) for m in (message_id, other)])


def test_a_blocked_reader_hears_that_redis_is_down_at_once():
    """A blocking read of an unreachable log answers None at once, not after its wait: the reader
    then looks at the message row, which may already hold the ending."""
    from chat.stream import sse

    log = RedisStreamLog(f"redis://127.0.0.1:{free_port()}/0", mirror_seconds=0)
    started = time.monotonic()
    assert asyncio.run(sse._read(log, "msg_down", 0, 5)) is None
    assert time.monotonic() - started < 5


def test_a_reader_following_a_log_does_not_interrupt_the_shared_read(message_id, raw_redis, monkeypatch):
    """A reader that took its events and comes back for more finds its log still covered by the
    shard's read: following a reply costs no wake (no extra round trip) per batch."""
    from chat.stream.follower import LogFollower

    wakes = []
    wake = LogFollower._wake

    async def counted(self, shard):
        wakes.append(shard)
        await wake(self, shard)

    monkeypatch.setattr(LogFollower, "_wake", counted)
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    writer = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    neighbour = f"{message_id}n"

    async def follow(key_id: str, count: int) -> list[int]:
        seen: list[int] = []
        while len(seen) < count:
            seen += [event["seq"] for event in await log.read(key_id, len(seen), block_seconds=10)]
        return seen

    async def scenario():
        neighbour_reading = asyncio.ensure_future(follow(neighbour, 1))  # the shard's read starts here
        await asyncio.sleep(0.3)
        reading = asyncio.ensure_future(follow(message_id, 30))
        for seq in range(1, 31):
            await asyncio.sleep(0.01)
            await writer.append(message_id, events(message_id, seq, seq))
        await writer.append(neighbour, events(neighbour, 1, 1))
        return await asyncio.wait_for(reading, 10), await asyncio.wait_for(neighbour_reading, 10)

    followed, neighbour_seen = asyncio.run(scenario())
    assert followed == list(range(1, 31)) and neighbour_seen == [1]
    assert len(wakes) <= 2, len(wakes)  # joining the running read; nothing per batch after that
    raw_redis.delete(RedisStreamLog.key(message_id), RedisStreamLog.key(neighbour))


RUNNERS = {
    "asyncio.run": lambda read: asyncio.run(read()),
    "async_to_sync": lambda read: async_to_sync(read)(),  # a sync view or test reading a stream
    "anyio.run": lambda read: anyio.run(read),  # `manage.py mcp` (stdio)
}


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_event_loop_that_ends_does_not_wait_out_the_shared_read(message_id, raw_redis, runner):
    """A reader on an event loop that ends with it (async_to_sync, asyncio.run, anyio.run) takes the
    events of another process's reply and leaves: the loop ends at once. The shard's next read,
    which had just started, ends with the loop; it is not waited out (its block, then the shard's
    linger), as it was when the loop's cancel reached the read through redis-py and was lost."""
    from chat.stream.follower import LogFollower

    writer = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)
    asyncio.run(writer.append(message_id, events(message_id, 1, 3)))
    log = RedisStreamLog(settings.REDIS_URL, mirror_seconds=0)

    async def read():
        return await log.read(message_id, 0, block_seconds=30)

    started = time.monotonic()
    found = RUNNERS[runner](read)
    took = time.monotonic() - started
    assert [event["seq"] for event in found] == [1, 2, 3]
    assert took < LogFollower.BLOCK_MS / 1000 / 2, took
    raw_redis.delete(RedisStreamLog.key(message_id))
