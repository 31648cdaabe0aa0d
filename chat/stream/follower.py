"""Blocking reads of many Redis logs over a few connections: the readers of other processes' replies.

A reader waiting for the next events of a reply produced elsewhere does not hold a Redis connection
of its own. Its wait joins a shard: one dedicated connection running one `XREAD BLOCK` over the logs
its readers wait on (at most KEYS_PER_SHARD of them), from the oldest position any of them needs.
When the read returns, each waiter takes the events after its own position; the shard then reads
again for whoever is still waiting. A thousand remote readers cost ~16 connections, not a thousand.

A wait for a log the running read does not cover (a new log, or an older position) must not sit out
that read's block: every shard's read also covers the shard's own wake stream, and such a wait
adds an entry to it. Redis answers a read at once when a stream it names has entries after the
given id, so a wake that reaches Redis before the read it is meant for still ends that read.

On a Redis Cluster the keys of one read must share a slot: shards are then grouped by hash tag
(the logs' `{tenex:sN}`, so at most LOG_SHARDS groups however many logs), each shard's wake stream
carries its group's tag, and its reads go on the loop's cluster client to the node serving that
slot (which follows a slot that moved, as after a failover).

Everything here runs on one event loop (the reader's); no locks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from chat.stream.events import Event
from tenex.redis_clients import hash_tag


@dataclass(eq=False)
class _Log:
    """One log a shard reads: who waits on it, and where a reader coming back will resume."""

    waiters: list[tuple[int, asyncio.Future]] = field(default_factory=list)  # (seq seen up to, future)
    seen: int = 0  # the newest seq handed out (or asked after)
    idle_since: float = 0.0  # when its last waiter left


@dataclass(eq=False)
class _Shard:
    wake_key: str
    group: str | None = None  # the hash tag its keys share (on a cluster)
    client: Any = None  # its own connection, opened with the first read (one server only)
    logs: dict[str, _Log] = field(default_factory=dict)
    reading: dict[str, int] | None = None  # what the read in flight covers: key -> after seq
    woken: bool = False  # a wake has been sent to end the read in flight
    wake_id: str = "0-0"
    task: asyncio.Task | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # a waiter joined

    def waiting(self) -> bool:
        return any(log.waiters for log in self.logs.values())


class LogFollower:
    """Waits for new entries of many logs, sharing connections. One per event loop."""

    KEYS_PER_SHARD = 64
    BLOCK_MS = 10_000
    READ_COUNT = 1000
    WAKE_TTL_SECONDS = 3600
    # A log whose readers all left stays in its shard's reads this long: a reader that just took
    # its events is back within moments, and must find its log covered (no wake, no new read).
    KEY_LINGER_SECONDS = 2.0
    LINGER_SECONDS = 5.0  # how long a shard with nothing to read keeps its connection
    UNBLOCK_SECONDS = 2.0  # how long a cancelled shard waits for the wake to end its read

    def __init__(self, make_client, pool_client, *, by_slot: bool = False):
        # One server: a client bound to one connection, for a shard's reads. A cluster (`by_slot`):
        # None, the shards read on the pool client.
        self._make_client = make_client
        self._pool = pool_client  # the loop's shared client, for wakes
        self._by_slot = by_slot
        self._shards: list[_Shard] = []
        self._shard_of: dict[str, _Shard] = {}
        self._closing: set[asyncio.Task] = set()  # connections being closed (held: tasks are weak)

    async def wait(self, key: str, after_seq: int, timeout: float) -> list[Event]:
        """The entries of log `key` after `after_seq`, as soon as there are any; [] after `timeout`."""
        shard = self._shard_for(key)
        log = shard.logs.setdefault(key, _Log())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        entry = (after_seq, future)
        log.waiters.append(entry)
        shard.arrived.set()
        try:
            async with asyncio.timeout(timeout):  # the whole wait, the wake included
                if shard.task is None or shard.task.done():  # done: cancelled before it ever ran
                    shard.task = asyncio.ensure_future(self._follow(shard))
                elif self._uncovered(shard, key, after_seq) and not shard.woken:
                    # The read in flight does not cover this wait: end it, once for every wait that
                    # joins meanwhile (the next read covers them all).
                    shard.woken = True
                    await self._wake(shard)
                return await future
        except TimeoutError:
            return []
        finally:
            with suppress(ValueError):
                log.waiters.remove(entry)
            if not log.waiters:
                log.idle_since = time.monotonic()
                log.seen = max(log.seen, after_seq)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: an error no one was left to hear is not reported
            if shard.task is None and not shard.waiting():
                self._retire_soon(shard)  # its reads failed and nobody waits any more

    @staticmethod
    def _uncovered(shard: _Shard, key: str, after_seq: int) -> bool:
        """A read is in flight and would not answer a wait for `key` after `after_seq`."""
        return shard.reading is not None and shard.reading.get(key, after_seq + 1) > after_seq

    def _shard_for(self, key: str) -> _Shard:
        shard = self._shard_of.get(key)
        if shard is None:
            group = hash_tag(key) if self._by_slot else None
            shard = min((s for s in self._shards if s.group == group), key=lambda s: len(s.logs), default=None)
            if shard is None or len(shard.logs) >= self.KEYS_PER_SHARD:
                name = uuid.uuid4().hex
                wake_key = f"tenex:wake:{{{group}}}:{name}" if group is not None else f"tenex:wake:{{{name}}}"
                shard = _Shard(wake_key=wake_key, group=group)
                self._shards.append(shard)
            self._shard_of[key] = shard
        return shard

    async def _wake(self, shard: _Shard) -> None:
        pipe = self._pool.pipeline(transaction=False)
        pipe.xadd(shard.wake_key, {"w": "1"}, maxlen=8, approximate=False)
        pipe.expire(shard.wake_key, self.WAKE_TTL_SECONDS)
        await pipe.execute()

    def _to_read(self, shard: _Shard) -> dict[str, int]:
        """Each log's position for the next read; logs nobody has waited on for a while leave."""
        now = time.monotonic()
        reading = {}
        for key, log in list(shard.logs.items()):
            open_after = [after for after, future in log.waiters if not future.done()]
            if open_after:
                reading[key] = min(open_after)
            elif log.waiters or now - log.idle_since < self.KEY_LINGER_SECONDS:
                reading[key] = log.seen  # answered: its readers resume from here
            else:
                del shard.logs[key]
                if self._shard_of.get(key) is shard:
                    del self._shard_of[key]
        return reading

    async def _follow(self, shard: _Shard) -> None:
        try:
            while True:
                reading = self._to_read(shard)
                if not reading:
                    shard.arrived.clear()
                    try:
                        async with asyncio.timeout(self.LINGER_SECONDS):
                            await shard.arrived.wait()
                    except TimeoutError:
                        if not shard.logs:
                            return
                    continue
                streams = {shard.wake_key: shard.wake_id, **{key: f"{after}-0" for key, after in reading.items()}}
                shard.reading = reading
                try:
                    reply = await self._read(shard, streams)
                finally:
                    shard.reading = None
                    shard.woken = False
                self._deliver(shard, reply or [])
        except Exception as exc:  # noqa: BLE001 - every waiter hears it; their reader retries
            for log in shard.logs.values():
                for _after, future in log.waiters:
                    if not future.done():
                        future.set_exception(exc)
        finally:
            shard.task = None
            if not shard.waiting():
                await self._retire(shard)

    async def _read(self, shard: _Shard, streams: dict[str, str]) -> list:
        """The shard's XREAD BLOCK (`_xread`), ended at once when the shard is cancelled (its event loop is ending)."""
        # The cancel must not reach the read through redis-py: it sends each command under
        # asyncio.wait_for, which before Python 3.12 loses a cancel that arrives as the send completes
        # (CPython gh-86296). The read would then block for all of BLOCK_MS and the shard linger after
        # it, and the ending loop (asyncio.run, async_to_sync, anyio.run) would wait for both. So the
        # read is a task of its own, awaited shielded; a cancelled shard ends it as an uncovered wait
        # does, with a wake, and waits (briefly) for it to return.
        read = asyncio.ensure_future(self._xread(shard, streams))
        try:
            return await asyncio.shield(read)
        except asyncio.CancelledError:
            if not read.done():
                with suppress(Exception):  # Redis unreachable: the read fails on its own
                    async with asyncio.timeout(self.UNBLOCK_SECONDS):
                        await self._wake(shard)
                        await asyncio.wait((read,))
                read.cancel()  # (a no-op once it returned)
            if not read.cancelled() and read.done():
                read.exception()  # retrieved: nobody is left to read its answer
            raise

    async def _xread(self, shard: _Shard, streams: dict[str, str]) -> list:
        """One XREAD BLOCK of a shard's streams: on its own connection, or (on a cluster) on the
        pool client, sent to the node serving the shard's slot."""
        if not self._by_slot:
            if shard.client is None:
                shard.client = self._make_client()
            return await shard.client.xread(streams, count=self.READ_COUNT, block=self.BLOCK_MS)
        # Named by node: a cluster client would otherwise ask a server where XREAD's keys are
        # (its keys have no fixed place) before every read. A slot that moved answers MOVED, which
        # the client follows; a node that is gone fails the read, and the next one finds the new one.
        await self._pool.initialize()  # learns the layout: first, and again after a node failed
        node = self._pool.get_node_from_key(shard.wake_key)
        return await self._pool.execute_command(
            "XREAD", "COUNT", self.READ_COUNT, "BLOCK", self.BLOCK_MS, "STREAMS", *streams.keys(), *streams.values(),
            target_nodes=node,
        )

    def _forget(self, shard: _Shard):
        """Take a shard nobody waits on out of use; its client, to be closed."""
        with suppress(ValueError):
            self._shards.remove(shard)
        for key in shard.logs:
            if self._shard_of.get(key) is shard:
                del self._shard_of[key]
        shard.logs.clear()
        client, shard.client = shard.client, None
        return client

    async def _retire(self, shard: _Shard) -> None:
        """Forget a shard and close its connection (waiting at most a second for that)."""
        client = self._forget(shard)
        if client is not None:
            await self._close(client)

    def _retire_soon(self, shard: _Shard) -> None:
        """`_retire`, without keeping a reader waiting on the close."""
        client = self._forget(shard)
        if client is not None:
            self._closing.add(task := asyncio.ensure_future(self._close(client)))
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(client) -> None:
        with suppress(Exception):
            async with asyncio.timeout(1):
                await client.aclose()

    @staticmethod
    def _deliver(shard: _Shard, reply: list) -> None:
        for stream, entries in reply:
            key = stream.decode() if isinstance(stream, bytes) else stream
            if key == shard.wake_key:
                last = entries[-1][0]
                shard.wake_id = last.decode() if isinstance(last, bytes) else last
                continue
            log = shard.logs.get(key)
            if log is None or not entries:
                continue
            events = [Event.from_entry(fields) for _entry_id, fields in entries]
            log.seen = max(log.seen, events[-1]["seq"])
            for after, future in log.waiters:
                if not future.done():
                    found = [event for event in events if event["seq"] > after]
                    if found:
                        future.set_result(found)
