"""The stream readers' timed waits (chat/stream/waits.py): woken early, or ended by their loop's one timer."""

from __future__ import annotations

import asyncio
import threading
import time

from chat.stream import waits
from chat.stream.waits import TICK_SECONDS, wait_woken, wake


def pending_waits(loop: asyncio.AbstractEventLoop) -> int:
    return sum(len(bucket) for bucket in waits._for_loop(loop).buckets.values())


def test_a_woken_wait_answers_at_once_and_leaves_nothing_behind():
    async def scenario():
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(1000)]
        waiting = [asyncio.ensure_future(wait_woken(future, 30)) for future in futures]
        await asyncio.sleep(0)
        assert pending_waits(loop) == 1000
        started = time.monotonic()
        for future in futures:
            wake(future)
        woken = await asyncio.gather(*waiting)
        return woken, time.monotonic() - started, pending_waits(loop)

    woken, took, left = asyncio.run(scenario())
    assert woken == [True] * 1000
    assert took < 1
    assert left == 0


def test_a_wait_ends_within_a_tick_of_its_deadline_even_when_an_earlier_one_comes_later():
    async def scenario():
        loop = asyncio.get_running_loop()
        started = time.monotonic()

        async def timed(seconds: float) -> tuple[bool, float]:
            woken = await wait_woken(loop.create_future(), seconds)
            return woken, time.monotonic() - started

        late = asyncio.ensure_future(timed(1.0))
        await asyncio.sleep(0)
        early = asyncio.ensure_future(timed(0.3))  # armed after the later deadline: the timer moves
        return await early, await late

    (early_woken, early_at), (late_woken, late_at) = asyncio.run(scenario())
    assert not early_woken and not late_woken
    assert 0.3 <= early_at < 0.3 + TICK_SECONDS + 0.25
    assert 1.0 <= late_at < 1.0 + TICK_SECONDS + 0.25


def test_a_cancelled_wait_is_forgotten_and_a_wake_from_another_thread_reaches_its_loop():
    async def scenario():
        loop = asyncio.get_running_loop()
        cancelled = asyncio.ensure_future(wait_woken(loop.create_future(), 30))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert pending_waits(loop) == 0
        future = loop.create_future()
        threading.Timer(0.1, loop.call_soon_threadsafe, (wake, future)).start()
        return await wait_woken(future, 30)

    assert asyncio.run(scenario()) is True
