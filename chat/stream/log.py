"""The per-message event log: Redis Streams with REDIS_URL, an in-process store otherwise.

Events are dicts carrying `seq` (1, 2, 3... per message). The log is append-only and idempotent by
seq: an event whose seq is not above the last one is refused, so a replayed append can never
duplicate or reorder what readers see. Readers ask for "events after seq N" and may block for new
ones; they never write.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections import defaultdict
from typing import Any, Protocol

from django.conf import settings

Event = dict[str, Any]
TERMINAL_TYPES = frozenset({"done", "error"})


class StreamLog(Protocol):
    async def append(self, message_id: str, event: Event) -> bool:
        """Append; False when an event with this seq or a later one is already there."""
        ...

    async def read(self, message_id: str, after_seq: int, *, block_seconds: float) -> list[Event]: ...

    async def exists(self, message_id: str) -> bool: ...

    async def finish(self, message_id: str) -> None:
        """The message ended: keep its log for TENEX_STREAM_TTL_SECONDS more, then let it go."""
        ...


class MemoryStreamLog:
    """In-process log for the embedded default. Thread-safe; readers on any event loop."""

    def __init__(self, ttl_seconds: int | None = None):
        self._lock = threading.Lock()
        self._events: dict[str, list[Event]] = {}
        self._expires: dict[str, float] = {}
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)
        self._ttl = ttl_seconds if ttl_seconds is not None else settings.TENEX_STREAM_TTL_SECONDS

    async def append(self, message_id: str, event: Event) -> bool:
        with self._lock:
            events = self._events.setdefault(message_id, [])
            last = events[-1]["seq"] if events else 0
            if event["seq"] <= last:
                return False
            events.append(event)
            waiters = list(self._waiters.pop(message_id, ()))
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(waiter.set)
            except RuntimeError:  # that reader's loop has closed
                pass
        return True

    def _after(self, message_id: str, after_seq: int) -> list[Event]:
        events = self._events.get(message_id)
        if not events:
            return []
        if events[-1]["seq"] == len(events):
            return events[max(after_seq, 0) :]  # no gaps: seq n sits at index n-1
        return [event for event in events if event["seq"] > after_seq]

    async def read(self, message_id: str, after_seq: int, *, block_seconds: float) -> list[Event]:
        self._expire()
        with self._lock:
            found = self._after(message_id, after_seq)
            if found or block_seconds <= 0:
                return found
            waiter = asyncio.Event()
            entry = (asyncio.get_running_loop(), waiter)
            self._waiters[message_id].add(entry)
        try:
            await asyncio.wait_for(waiter.wait(), timeout=block_seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.get(message_id, set()).discard(entry)
        with self._lock:
            return self._after(message_id, after_seq)

    async def exists(self, message_id: str) -> bool:
        self._expire()
        with self._lock:
            return bool(self._events.get(message_id))

    async def finish(self, message_id: str) -> None:
        with self._lock:
            self._expires[message_id] = time.monotonic() + self._ttl

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            gone = [m for m, at in self._expires.items() if at <= now]
            for message_id in gone:
                self._expires.pop(message_id, None)
                self._events.pop(message_id, None)


class RedisStreamLog:
    """Redis Streams: one stream per message, entry id `<seq>-0`, so XADD itself refuses repeats.

    Keys are hash-tagged by message (`tenex:stream:{msg_...}`) so a Redis Cluster keeps each log on
    one shard. Readers use XREAD BLOCK; each event loop gets its own client (redis.asyncio clients
    belong to the loop that created them).
    """

    def __init__(self, url: str):
        self._url = url
        # One client per event loop (redis.asyncio clients belong to their loop); weak keys, so a
        # closed loop's client goes with it and a new loop never inherits a dead one.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._maxlen = settings.TENEX_STREAM_MAXLEN
        self._ttl = settings.TENEX_STREAM_TTL_SECONDS

    @staticmethod
    def key(message_id: str) -> str:
        return f"tenex:stream:{{{message_id}}}"

    def _client(self):
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2, health_check_interval=30)
                self._clients[loop] = client
            return client

    async def append(self, message_id: str, event: Event) -> bool:
        import redis

        client = self._client()
        key = self.key(message_id)
        try:
            await client.xadd(
                key, {"e": json.dumps(event, separators=(",", ":"))}, id=f"{event['seq']}-0",
                maxlen=self._maxlen, approximate=True,
            )
        except redis.ResponseError as exc:
            if "equal or smaller" in str(exc):
                return False  # that seq is taken: appends are idempotent by seq
            raise
        if event["seq"] == 1 or event["type"] in TERMINAL_TYPES:
            # The log outlives the message by the TTL (set at the first and the last event).
            await client.expire(key, self._ttl)
        return True

    async def read(self, message_id: str, after_seq: int, *, block_seconds: float) -> list[Event]:
        client = self._client()
        key = self.key(message_id)
        block_ms = int(block_seconds * 1000) if block_seconds > 0 else None
        reply = await client.xread({key: f"{after_seq}-0"}, count=1000, block=block_ms)
        events: list[Event] = []
        for _stream, entries in reply or []:
            for _entry_id, fields in entries:
                raw = fields.get(b"e") or fields.get("e")
                events.append(json.loads(raw))
        return events

    async def exists(self, message_id: str) -> bool:
        return bool(await self._client().exists(self.key(message_id)))

    async def finish(self, message_id: str) -> None:
        await self._client().expire(self.key(message_id), self._ttl)


_log: StreamLog | None = None
_log_lock = threading.Lock()


def get_stream_log() -> StreamLog:
    global _log
    with _log_lock:
        if _log is None:
            _log = RedisStreamLog(settings.REDIS_URL) if settings.REDIS_URL else MemoryStreamLog()
        return _log
