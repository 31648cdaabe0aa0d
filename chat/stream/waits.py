"""Timed waits for the many stream readers of one event loop, on one shared timer per loop.

A reader waits for its reply's next events with a timeout (its next ping or look at the message
row), and nearly every wait ends early, woken by the events. An asyncio timer per wait costs a push
onto the loop's timer heap and, once cancelled, a place there until the heap is swept; at a
thousand waits a second per hundred replies that heap work became a reader's largest cost. Here a
wait's deadline is rounded up to the next tick (TICK_SECONDS) and put in that tick's bucket; one
timer per loop, armed only while some wait is pending, ends the buckets that are due. A wait lasts
at most one tick longer than asked, which no ping or row check notices.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import weakref

TICK_SECONDS = 0.1


class _LoopDeadlines:
    """The pending timed waits of one event loop, by the tick that ends them (used on that loop only)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buckets: dict[int, set[asyncio.Future]] = {}
        self.ticks: list[int] = []  # heap of the buckets' ticks
        self.timer: asyncio.TimerHandle | None = None

    def add(self, future: asyncio.Future, seconds: float) -> int:
        tick = math.ceil((self.loop.time() + seconds) / TICK_SECONDS)
        bucket = self.buckets.get(tick)
        if bucket is None:
            bucket = self.buckets[tick] = set()
            heapq.heappush(self.ticks, tick)
        bucket.add(future)
        if self.timer is None or self.timer.when() > self.ticks[0] * TICK_SECONDS:
            self._arm()  # none armed, or armed for a later tick than this wait's
        return tick

    def discard(self, future: asyncio.Future, tick: int) -> None:
        bucket = self.buckets.get(tick)
        if bucket is not None:
            bucket.discard(future)  # an empty bucket stays until its tick: cheaper than a heap removal

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(self.ticks[0] * TICK_SECONDS, self._end_due) if self.ticks else None

    def _end_due(self) -> None:
        self.timer = None
        now = self.loop.time() + TICK_SECONDS / 1000  # the loop runs a timer up to its clock's resolution early
        while self.ticks and self.ticks[0] * TICK_SECONDS <= now:
            for future in self.buckets.pop(heapq.heappop(self.ticks)):
                if not future.done():
                    future.set_result(False)
        self._arm()


_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopDeadlines] = weakref.WeakKeyDictionary()
_deadlines_lock = threading.Lock()


def _for_loop(loop: asyncio.AbstractEventLoop) -> _LoopDeadlines:
    deadlines = _deadlines.get(loop)
    if deadlines is None:
        with _deadlines_lock:
            deadlines = _deadlines.setdefault(loop, _LoopDeadlines(loop))
    return deadlines


async def wait_woken(future: asyncio.Future, seconds: float) -> bool:
    """Wait until `future` is done (True, by whoever wakes it) or about `seconds` pass (False)."""
    if seconds <= 0 or future.done():
        return future.done()
    deadlines = _for_loop(asyncio.get_running_loop())
    tick = deadlines.add(future, seconds)
    try:
        return bool(await future)
    finally:
        deadlines.discard(future, tick)


def wake(future: asyncio.Future) -> None:
    """Complete a waiter's future as woken (on its own loop; a no-op when it has ended already)."""
    if not future.done():
        future.set_result(True)
