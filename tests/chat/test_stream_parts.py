"""The stream core's parts on their own: a Generation's status, the EventFlusher against real logs,
the CancelBus across two buses on one real Redis, the LeaseKeeper's Redis lease index."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from chat.stream.cancel import CancelBus
from chat.stream.events import make_event
from chat.stream.flusher import EventFlusher
from chat.stream.generation import Generation, GenerationStatus
from chat.stream.leases import LeaseKeeper, lease_member, leases_key
from chat.stream.log import MemoryStreamLog, RedisStreamLog, cancel_key
from tests.helpers import free_port

Status = GenerationStatus


def new_generation() -> Generation:
    return Generation(workspace_id="wsp_test", message_id=f"msg_test{uuid.uuid4().hex}", thread_id="thr_test")


# --- Generation ------------------------------------------------------------------------------------
def test_a_weightier_reason_to_stop_replaces_a_lesser_one_never_the_reverse():
    generation = new_generation()
    assert generation.claimed and not generation.stopped
    generation.cancel()
    assert generation.status is Status.CANCELLED and generation.stopped and generation.claimed
    generation.stop_for_exit()
    assert generation.status is Status.STOPPING
    generation.cancel()
    assert generation.status is Status.STOPPING
    error = ConnectionError("log down")
    generation.log_failed(error)
    assert generation.status is Status.LOG_FAILED and generation.publish_error is error
    generation.stop_for_exit()
    assert generation.status is Status.LOG_FAILED
    generation.lose()
    assert generation.status is Status.LOST and generation.lost and not generation.claimed
    generation.cancel()
    generation.log_failed(error)
    assert generation.status is Status.LOST


def test_once_produced_only_a_loss_changes_a_finishing_reply():
    generation = new_generation()
    generation.stop_for_exit()
    assert generation.produced() is Status.STOPPING
    assert generation.status is Status.FINISHING and not generation.claimed
    generation.cancel()
    generation.stop_for_exit()
    generation.log_failed(ConnectionError("log down"))
    assert generation.status is Status.FINISHING and generation.publish_error is not None
    generation.lose()
    assert generation.lost

    lost = new_generation()
    lost.lose()
    assert lost.produced() is Status.LOST and lost.status is Status.LOST

    later = new_generation()
    later.produced()
    later.status = Status.RECORDED_LATER
    later.lose()
    assert later.status is Status.RECORDED_LATER


def test_stopping_cancels_the_provider_call():
    async def scenario() -> bool:
        generation = new_generation()
        generation.consuming = asyncio.ensure_future(asyncio.sleep(60))
        generation.cancel()
        with pytest.raises(asyncio.CancelledError):
            await generation.consuming
        return generation.consuming.cancelled()

    assert asyncio.run(scenario())


# --- EventFlusher ------------------------------------------------------------------------------------
def test_published_events_reach_the_log_numbered_and_in_order():
    async def scenario():
        log = MemoryStreamLog()
        flusher = EventFlusher(log)
        first, second = new_generation(), new_generation()
        for word in ("one ", "two ", "three "):
            flusher.publish(first, "delta", delta=word)
            flusher.publish(second, "delta", delta=word.upper())
        await flusher.drain(first)
        await flusher.drain(second)
        return [await log.read(g.message_id, 0, block_seconds=0) for g in (first, second)], first, second

    (logged_first, logged_second), first, second = asyncio.run(scenario())
    assert [(e["seq"], e["delta"]) for e in logged_first] == [(1, "one "), (2, "two "), (3, "three ")]
    assert [e["delta"] for e in logged_second] == ["ONE ", "TWO ", "THREE "]
    assert first.pending == [] and first.status is Status.PRODUCING


def test_a_reply_another_process_ended_is_lost_and_writes_nothing_more():
    async def scenario():
        log = MemoryStreamLog()
        generation = new_generation()
        ending = make_event(1, "error", message_id=generation.message_id, thread_id="thr_test", error={"code": "x"})
        assert await log.append(generation.message_id, [ending])  # another process's ending took seq 1
        flusher = EventFlusher(log)
        flusher.publish(generation, "delta", delta="late ")
        await flusher.drain(generation)
        return generation, await log.read(generation.message_id, 0, block_seconds=0)

    generation, logged = asyncio.run(scenario())
    assert generation.lost
    assert [e["type"] for e in logged] == ["error"]


def test_an_unreachable_log_stops_the_reply_and_keeps_its_events_for_a_retry():
    async def scenario():
        log = RedisStreamLog(f"redis://127.0.0.1:{free_port()}/0", mirror_seconds=0)  # nothing listens there
        flusher = EventFlusher(log)
        generation = new_generation()
        flusher.publish(generation, "delta", delta="kept ")
        with pytest.raises((redis.RedisError, OSError)):
            await flusher.drain(generation)
        return generation

    generation = asyncio.run(scenario())
    assert generation.status is Status.LOG_FAILED and isinstance(generation.publish_error, (redis.RedisError, OSError))
    assert [e["delta"] for e in generation.pending] == ["kept "]


# --- CancelBus ---------------------------------------------------------------------------------------
class LoopThread:
    """An event loop on a thread of its own, as the runtime runs one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loops():
    started: list[LoopThread] = []

    def start() -> LoopThread:
        started.append(LoopThread())
        return started[-1]

    yield start
    for loop in started:
        loop.close()


def bus_on(loop: LoopThread, active: dict, redis_url: str = "") -> CancelBus:
    client = redis.Redis.from_url(redis_url) if redis_url else None

    async def no_wait(*_args) -> None:
        return None

    return CancelBus(loop=loop.loop, redis_url=redis_url, sync_redis=lambda: client, active=active,
                     await_ending=no_wait)


def wait_until(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_a_cancel_before_the_start_is_found_by_the_start_once(loops):
    loop = loops()
    bus = bus_on(loop, {})
    bus.request_cancel("msg_early")
    assert wait_until(lambda: "msg_early" in bus._early_cancels)
    assert bus.cancel_was_requested("msg_early")
    assert not bus.cancel_was_requested("msg_early")
    assert not bus.cancel_was_requested("msg_never_cancelled")


def test_a_cancel_from_another_process_stops_the_reply_where_it_is_produced(loops):
    producing, other = loops(), loops()
    generation = new_generation()
    raw = redis.Redis.from_url(settings.REDIS_URL)
    producer_bus = bus_on(producing, {generation.message_id: generation}, settings.REDIS_URL)
    listening = asyncio.run_coroutine_threadsafe(producer_bus.listen_for_cancels(), producing.loop)
    try:
        requester = bus_on(other, {}, settings.REDIS_URL)
        # The listener subscribes on its own time: the request is repeated until it is heard.
        deadline = time.monotonic() + 10
        while generation.status is Status.PRODUCING and time.monotonic() < deadline:
            requester.request_cancel(generation.message_id)
            wait_until(lambda: generation.status is not Status.PRODUCING, 0.5)
        assert generation.status is Status.CANCELLED
        # The mark a producer's next append sees, should the notice be lost.
        assert raw.exists(cancel_key(generation.message_id))
    finally:
        listening.cancel()
        raw.delete(cancel_key(generation.message_id))
        raw.close()


def test_a_cancel_redis_cannot_carry_is_a_connection_error(loops):
    loop = loops()
    bus = bus_on(loop, {}, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConnectionError):
        bus.cancel_and_wait("wsp_test", "msg_test")


# --- LeaseKeeper -------------------------------------------------------------------------------------
def test_leases_are_indexed_in_redis_until_the_reply_ends(loops):
    loop = loops()
    client = redis.Redis.from_url(settings.REDIS_URL)
    generation = new_generation()

    async def db(function, *args):
        raise AssertionError("no database step expected")

    keeper = LeaseKeeper(
        producer_id="test", log=MemoryStreamLog(), redis_url=settings.REDIS_URL, sync_redis=lambda: client,
        active={generation.message_id: generation}, db=db, spawn=asyncio.ensure_future,
    )
    member = lease_member(generation.workspace_id, generation.message_id)
    try:
        before = time.time()
        keeper.track_new(generation.workspace_id, generation.message_id)
        assert client.zscore(leases_key(), member) >= before + settings.TENEX_STREAM_LEASE_SECONDS - 1
        assert loop.run(keeper._lease_alive(generation.workspace_id, generation.message_id))
        keeper.lease_ended(generation.workspace_id, generation.message_id)
        assert client.zscore(leases_key(), member) is not None  # taken off with the next round, not at once
        loop.run(keeper.forget_ended_leases())
        assert client.zscore(leases_key(), member) is None
        assert not loop.run(keeper._lease_alive(generation.workspace_id, generation.message_id))
    finally:
        client.zrem(leases_key(), member)
        client.close()
