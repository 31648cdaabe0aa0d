"""The per-message event log: Redis Streams with REDIS_URL, an in-process store otherwise.

Events are dicts carrying `seq` (1, 2, 3... per message). The log is append-only and idempotent by
seq: a batch whose first seq is not above the last one is refused whole, so a replayed append can
never duplicate or reorder what readers see. Readers ask for "events after seq N" and may block for
new ones; they never write.

With Redis, each process also keeps an in-process mirror of the newest events of the logs it
produces (until shortly after they end): an event enters the mirror only after Redis has accepted
it, so a reader in the producing process (the common case: the client that sent the message)
follows the reply without a Redis round trip per batch and sees nothing a reader in another
process could not see. A reader the mirror cannot serve (another process's reply, or one further
behind than the mirror holds) reads Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import weakref
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from chat.stream.events import Event, event_text
from chat.stream.follower import LogFollower
from chat.stream.waits import wait_woken, wake
from tenex.redis_clients import async_client, is_cluster

TERMINAL_TYPES = frozenset({"done", "error"})
# An append's answer when the events went in and a cancel of the message has been asked for (truthy).
CANCEL_REQUESTED = 2


def _delta_chars(events: list[Event]) -> int:
    return sum(len(event["delta"]) for event in events if event["type"] == "delta")


# The logs are spread over this many hash tags (`{tenex:s0}`…): a Redis Cluster keeps each tag's
# keys in one slot, so one XREAD can follow many logs, and the tags spread the logs over the
# cluster's masters. Changing it renames every log: only with every process stopped.
LOG_SHARDS = 64


def shard_tag(message_id: str) -> str:
    """The hash tag of a message's keys (its log and its cancel mark): one of LOG_SHARDS."""
    return f"{{tenex:s{zlib.crc32(message_id.encode()) % LOG_SHARDS}}}"


def cancel_key(message_id: str) -> str:
    """The Redis key marking a message whose generation should stop (in its log's slot)."""
    return f"tenex:cancel:{shard_tag(message_id)}:{message_id}"


class StreamLog(Protocol):
    async def append(self, message_id: str, events: list[Event]) -> bool | int:
        """Append events with consecutive seqs, all or none; False when the first seq is already taken,
        CANCEL_REQUESTED when they went in and the message's cancel mark is set (Redis only)."""
        ...

    async def append_many(self, batches: list[tuple[str, list[Event]]]) -> list[bool | int | Exception]:
        """`append` for several messages at once (one round trip); a result, or the error, per batch."""
        ...

    async def read(self, message_id: str, after_seq: int, *, block_seconds: float) -> list[Event]:
        """Events after `after_seq`, waiting up to about `block_seconds` for one; raises (a store
        error, or TimeoutError) soon after that when the store cannot answer."""
        ...

    async def exists(self, message_id: str) -> bool: ...

    async def text_through(self, message_id: str, seq: int) -> int | None:
        """How many characters the deltas of events 1..`seq` hold; None when the log no longer
        holds every one of them (expired, trimmed, or lost)."""
        ...

    def expect(self, message_id: str) -> None:
        """This process is about to produce the message: its readers here can wait for it locally."""
        ...

    def abandon(self, message_id: str) -> None:
        """This process will not produce the message after all (another process ended it first)."""
        ...

    def expected_here(self, message_id: str) -> bool:
        """This process produces the message and its readers here will be woken by what it appends."""
        ...

    async def finish(self, message_id: str) -> None:
        """The message ended: keep its log for TENEX_STREAM_TTL_SECONDS more, then let it go."""
        ...


class MemoryStreamLog:
    """In-process log: the embedded default's store, and the Redis log's local mirror.

    Thread-safe; readers on any event loop. Finished logs expire `ttl_seconds` after `finish`.
    """

    EXPIRY_CHECK_SECONDS = 1.0

    def __init__(
        self, ttl_seconds: int | float | None = None, keep_last: int | None = None, keep_seconds: float | None = None
    ):
        # A mirror holds only each log's newest events (older ones are in Redis): at most `keep_last`,
        # and only those appended in the last `keep_seconds` (but always the newest batch).
        self._keep_last = keep_last
        self._keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._events: dict[str, list[Event]] = {}
        # Per log, when each batch was appended and the seq it ended with (only with keep_seconds).
        self._batches: dict[str, deque[tuple[float, int]]] = {}
        self._expires: dict[str, float] = {}
        self._sealed: set[str] = set()  # logs whose writes stopped (see `seal`)
        self._next_expiry_check = 0.0
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = defaultdict(set)
        self._ttl = ttl_seconds if ttl_seconds is not None else settings.TENEX_STREAM_TTL_SECONDS

    def has(self, message_id: str) -> bool:
        return message_id in self._events

    async def append(self, message_id: str, events: list[Event]) -> bool:
        return self.append_now(message_id, events)

    async def append_many(self, batches: list[tuple[str, list[Event]]]) -> list[bool | Exception]:
        return self.append_many_now(batches)

    def append_now(self, message_id: str, events: list[Event]) -> bool:
        [appended] = self.append_many_now([(message_id, events)])
        return appended

    def append_many_now(self, batches: list[tuple[str, list[Event]]]) -> list[bool]:
        """Append each batch; the readers of all of them are woken together (one call per loop)."""
        waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        now = time.monotonic()
        appended = [self._append(message_id, events, waiters, now) for message_id, events in batches]
        self._wake(waiters)
        return appended

    def _append(self, message_id: str, events: list[Event], waiters: list, now: float) -> bool:
        if not events:
            return True
        with self._lock:
            logged = self._events.setdefault(message_id, [])
            last = logged[-1]["seq"] if logged else 0
            if events[0]["seq"] <= last:
                return False
            logged.extend(events)
            if self._keep_seconds is not None:
                self._trim_older(message_id, logged, events[-1]["seq"], now)
            if self._keep_last is not None and len(logged) > 2 * self._keep_last:
                del logged[: len(logged) - self._keep_last]  # trimmed in steps, not on every append
            waiters.extend(self._waiters.pop(message_id, ()))
        return True

    def _trim_older(self, message_id: str, logged: list[Event], last_seq: int, now: float) -> None:
        """Forget the batches appended more than `keep_seconds` ago (under the lock).

        The readers here took them long ago; one that fell further behind than that, or starts
        later from an early seq, reads them from Redis. The newest batch always stays, so the
        first seq held tells a reader whether the mirror can serve it. A slow reply (a token every
        few seconds) holds a couple of events this way, not every event it produced.
        """
        batches = self._batches.setdefault(message_id, deque())
        batches.append((now, last_seq))
        cutoff = now - self._keep_seconds
        forget_through = None
        while len(batches) > 1 and batches[0][0] < cutoff:
            forget_through = batches.popleft()[1]
        if forget_through is not None:
            first = logged[0]["seq"]
            if logged[-1]["seq"] - first == len(logged) - 1:  # no gaps: seq n sits at index n - first
                cut = min(max(forget_through - first + 1, 0), len(logged) - 1)
            else:
                cut = 0
                while cut < len(logged) - 1 and logged[cut]["seq"] <= forget_through:
                    cut += 1
            del logged[:cut]

    def expect(self, message_id: str) -> None:
        # Hold the (empty) log, so that its readers know to wait here for the first events.
        with self._lock:
            self._events.setdefault(message_id, [])

    def abandon(self, message_id: str) -> None:
        with self._lock:
            held = self._events.get(message_id)
        if held is not None and not held:
            self.drop(message_id)

    def expected_here(self, message_id: str) -> bool:
        return message_id in self._events

    def seal(self, message_id: str) -> None:
        """Take no more events for this log (its writes stopped reaching Redis): what it holds is
        still served, but a reader past it is told at once that it is not here (None), not kept
        waiting for events that will never come."""
        with self._lock:
            if message_id not in self._events:
                return
            self._sealed.add(message_id)
            waiters = self._waiters.pop(message_id, ())
        self._wake(waiters)

    def drop(self, message_id: str) -> None:
        """Forget a log now; blocked readers wake and find nothing here."""
        with self._lock:
            self._sealed.discard(message_id)
            self._events.pop(message_id, None)
            self._batches.pop(message_id, None)
            self._expires.pop(message_id, None)
            waiters = self._waiters.pop(message_id, ())
        self._wake(waiters)

    @staticmethod
    def _wake(waiters) -> None:
        """Wake readers on their own loops: one call a loop, however many readers wait there."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for loop, waiter in waiters:
            by_loop.setdefault(loop, []).append(waiter)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_wake_all, futures)
            except RuntimeError:  # that reader's loop has closed
                pass

    def _after(self, message_id: str, after_seq: int) -> list[Event] | None:
        """Events after `after_seq`; None when older ones it would need were trimmed (or never held)."""
        events = self._events.get(message_id)
        if events is None:
            return None if self._keep_last is not None else []  # a mirror that never held it, or dropped it
        if not events:
            return []  # expected here, nothing produced yet
        first = events[0]["seq"]
        if after_seq < first - 1:
            return None
        if events[-1]["seq"] - first == len(events) - 1:
            return events[after_seq - first + 1 :]  # no gaps: seq n sits at index n - first
        return [event for event in events if event["seq"] > after_seq]

    async def read(self, message_id: str, after_seq: int, *, block_seconds: float) -> list[Event]:
        found = await self.read_held(message_id, after_seq, block_seconds=block_seconds)
        return found or []

    async def read_held(self, message_id: str, after_seq: int, *, block_seconds: float) -> list[Event] | None:
        """`read`, or None when this store does not hold everything after `after_seq`."""
        self._expire()
        with self._lock:
            found = self._after(message_id, after_seq)
            if not found and message_id in self._sealed:
                return None
            if found is None or found or block_seconds <= 0:
                return found
            loop = asyncio.get_running_loop()
            entry = (loop, loop.create_future())
            self._waiters[message_id].add(entry)
        try:
            await wait_woken(entry[1], block_seconds)
        finally:
            with self._lock:
                waiting = self._waiters.get(message_id)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._waiters[message_id]
        with self._lock:
            found = self._after(message_id, after_seq)
            return None if not found and message_id in self._sealed else found

    async def exists(self, message_id: str) -> bool:
        self._expire()
        return bool(self._events.get(message_id))

    async def text_through(self, message_id: str, seq: int) -> int | None:
        with self._lock:
            events = self._after(message_id, 0)
            if not events or events[0]["seq"] != 1 or len(events) < seq or events[seq - 1]["seq"] != seq:
                return None
            return _delta_chars(events[:seq])

    async def finish(self, message_id: str) -> None:
        with self._lock:
            if message_id in self._events:
                self._expires[message_id] = time.monotonic() + self._ttl

    def _expire(self) -> None:
        # Amortised: at most one pass a second, however many readers poll.
        now = time.monotonic()
        if now < self._next_expiry_check:
            return
        with self._lock:
            self._next_expiry_check = now + self.EXPIRY_CHECK_SECONDS
            gone = [m for m, at in self._expires.items() if at <= now]
            for message_id in gone:
                self._expires.pop(message_id, None)
                self._sealed.discard(message_id)
                self._events.pop(message_id, None)
                self._batches.pop(message_id, None)


def _wake_all(futures: list[asyncio.Future]) -> None:
    for future in futures:
        wake(future)


# Appends batches of events, each to its own message's stream, each atomically: a batch is refused
# whole when its first seq is not above its stream's last entry, so a producer that lost its lease
# can never write after the ending another process recorded. Each batch's answer is 1, or 2 when
# its message's cancel mark is set (the producer learns of a cancel with its next append, even one
# whose pub/sub notice it missed, at no extra round trip), or 0 when refused. Many replies' batches
# go in one call: the per-command cost of a round, client and server, is paid once, not per reply.
# KEYS: each batch's stream and cancel mark, in pairs (a pair shares a hash tag; on a cluster, one
# call's keys share one); ARGV: maxlen, ttl, then per batch its first seq, its event count and one
# JSON payload per event.
_APPEND_SCRIPT = """
local maxlen, ttl = ARGV[1], ARGV[2]
local answers = {}
local at = 3
for b = 1, #KEYS / 2 do
  local stream = KEYS[2 * b - 1]
  local first, count = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  at = at + 2
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #last > 0 and tonumber(string.match(last[1][1], '^(%d+)')) >= first then
    answers[b] = 0
  else
    for i = 0, count - 1 do
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, (first + i) .. '-0', 'e', ARGV[at + i])
    end
    redis.call('EXPIRE', stream, ttl)
    if redis.call('EXISTS', KEYS[2 * b]) == 1 then answers[b] = 2 else answers[b] = 1 end
  end
  at = at + count
end
return answers
"""
_APPEND_SHA = hashlib.sha1(_APPEND_SCRIPT.encode()).hexdigest()
# The most events one append call carries: a round of many replies goes in several calls (of one
# pipeline) rather than one call that holds Redis for long.
APPEND_CALL_EVENTS = 512


def async_redis_client(url: str, *, single_connection: bool = False):
    """A redis.asyncio client (a cluster client for a cluster URL) for the calling event loop, sized
    for many concurrent streams (or bound to one connection of its own, for a follower's blocking
    reads on one server)."""
    return async_client(
        url,
        single_connection_client=single_connection,
        # Generous: on a saturated event loop a connect to a healthy Redis can take seconds.
        socket_connect_timeout=10,
        # Above the longest XREAD BLOCK a reader asks for, so a quiet stream never looks like a
        # dead socket.
        socket_timeout=max(30, settings.TENEX_STREAM_LEASE_SECONDS + 10),
        health_check_interval=30,
        max_connections=settings.TENEX_REDIS_MAX_CONNECTIONS,
    )


@dataclass
class _LoopClient:
    client: Any
    follower: LogFollower


class RedisStreamLog:
    """Redis Streams: one stream per message, entry id `<seq>-0`.

    Keys are hash-tagged by shard (`tenex:stream:{tenex:s7}:msg_...`, see `shard_tag`) so a Redis
    Cluster keeps a log and its cancel mark in one slot, and one XREAD can follow every log of a
    shard. Appends for many messages go in one pipeline. Readers in other processes wait with
    XREAD BLOCK, many of them to a connection (`LogFollower`, which groups them by slot on a
    cluster); readers in the producing process use the mirror instead.
    """

    # Per message: the newest events held (trimmed in steps of as many). A reply's local reader that
    # falls further behind than this, which a provider faster than the reader's client can cause,
    # reads the older ones from Redis; 1,024 holds a whole typical reply (about 1 KiB an event).
    MIRROR_EVENTS = 1024
    # ...and only those appended in the last this many seconds: a local reader takes each batch
    # within milliseconds, so a slow reply need not keep every token it produced in memory.
    MIRROR_SECONDS = 2.0
    # How much longer than its wait a read from Redis may take before Redis counts as unreachable.
    READ_SLACK_SECONDS = 2.0

    def __init__(self, url: str, mirror_seconds: float | None = None):
        self._url = url
        # One client per event loop (redis.asyncio clients belong to their loop); weak keys, so a
        # closed loop's client goes with it and a new loop never inherits a dead one.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._maxlen = settings.TENEX_STREAM_MAXLEN
        self._ttl = settings.TENEX_STREAM_TTL_SECONDS
        # Messages whose last append answered an error: its events may have gone in all the same.
        self._unsure: set[str] = set()
        linger = settings.TENEX_STREAM_MIRROR_SECONDS if mirror_seconds is None else mirror_seconds
        self.mirror = MemoryStreamLog(
            ttl_seconds=linger, keep_last=self.MIRROR_EVENTS, keep_seconds=self.MIRROR_SECONDS
        ) if linger > 0 else None

    @staticmethod
    def key(message_id: str) -> str:
        return f"tenex:stream:{shard_tag(message_id)}:{message_id}"

    def _client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.get(loop)
            if entry is None:
                client = async_redis_client(self._url)
                if is_cluster(self._url):
                    # A shard's reads go to the node serving its slot, on the loop's cluster client.
                    follower = LogFollower(None, client, by_slot=True)
                else:
                    follower = LogFollower(lambda: async_redis_client(self._url, single_connection=True), client)
                entry = _LoopClient(client, follower)
                self._clients[loop] = entry
            return entry

    async def append(self, message_id: str, events: list[Event]) -> bool:
        [result] = await self.append_many([(message_id, events)])
        if isinstance(result, Exception):
            raise result
        return result

    async def append_many(self, batches: list[tuple[str, list[Event]]]) -> list[bool | int | Exception]:
        import redis

        entry = self._client()
        pending = [index for index, (_message_id, events) in enumerate(batches) if events]
        results: list[bool | int | Exception] = [True] * len(batches)
        for attempt in range(2):
            calls = self._append_calls(batches, pending)
            # EVALSHA; on a server that lacks the script (new, restarted, flushed, or a replica
            # just promoted) EVAL, which also leaves it cached there for the next EVALSHA.
            script = ("EVALSHA", _APPEND_SHA) if attempt == 0 else ("EVAL", _APPEND_SCRIPT)
            commands = [self._append_command(script, batches, call) for call in calls]
            try:
                replies, resent = await self._evalsha_fresh(entry.client, commands)
            except Exception:
                if self.mirror is not None:  # nothing more will come here: readers ask Redis from now on
                    for message_id, _events in batches:
                        self.mirror.seal(message_id)
                raise
            missing = []
            for call, reply in zip(calls, replies, strict=True):
                if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 0:
                    missing.extend(call)  # Redis restarted or was flushed: resend with the script
                    continue
                # An error reply answers for every batch of its call, some of which may have gone
                # in before the error: their next append may find them there.
                answers = [reply] * len(call) if isinstance(reply, Exception) else reply
                for index, answer in zip(call, answers, strict=True):
                    message_id = batches[index][0]
                    if (
                        answer == 0 and (resent or message_id in self._unsure)
                        and await self._holds(entry.client, *batches[index])
                    ):
                        answer = 1  # refused as a duplicate of itself: its earlier send went in after all
                    if isinstance(answer, Exception):
                        self._unsure.add(message_id)
                        results[index] = answer
                    else:
                        self._unsure.discard(message_id)
                        results[index] = CANCEL_REQUESTED if answer == CANCEL_REQUESTED else bool(answer)
            if not missing:
                break
            pending = missing
        if self.mirror is not None:
            mirrored = []
            for (message_id, events), result in zip(batches, results, strict=True):
                if result is False or isinstance(result, Exception):
                    self.mirror.drop(message_id)  # another process wrote here, or we cannot tell
                elif events and (events[0]["seq"] == 1 or self.mirror.has(message_id)):
                    # Only logs mirrored from their start: a reader there must never miss an event.
                    mirrored.append((message_id, events))
            self.mirror.append_many_now(mirrored)
        return results

    def _append_calls(self, batches: list[tuple[str, list[Event]]], pending: list[int]) -> list[list[int]]:
        """The batches (by index) grouped into script calls: by hash tag on a cluster (a call's keys
        must share a slot), and at most about APPEND_CALL_EVENTS events a call."""
        cluster = is_cluster(self._url)
        calls: list[list[int]] = []
        filling: dict[str, tuple[list[int], int]] = {}  # per group: its call being filled, and its events
        for index in pending:
            message_id, events = batches[index]
            group = shard_tag(message_id) if cluster else ""
            call, size = filling.get(group, ([], 0))
            if not call or size + len(events) > APPEND_CALL_EVENTS:
                call, size = [], 0
                calls.append(call)
            call.append(index)
            filling[group] = (call, size + len(events))
        return calls

    def _append_command(self, script: tuple[str, str], batches: list[tuple[str, list[Event]]], call: list[int]) -> list:
        keys: list[str] = []
        args: list[Any] = [self._maxlen, self._ttl]
        for index in call:
            message_id, events = batches[index]
            keys += (self.key(message_id), cancel_key(message_id))
            args += (events[0]["seq"], len(events))
            args += [event_text(event) for event in events]  # the SSE readers' text too
        return [*script, len(keys), *keys, *args]

    async def _evalsha_fresh(self, client, commands: list) -> tuple[list, bool]:
        """`_eval_all`, sent once more on fresh connections when the pooled one turns out dead
        (Redis restarted, failed over, or a proxy dropped idle connections): the first append after
        Redis comes back must not fail for a socket the pool kept from before. True with a resend."""
        import redis

        try:
            return await self._eval_all(client, commands), False
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            # Every idle connection of the pool is from the same Redis: drop them all at once.
            await disconnect_idle(client)
            return await self._eval_all(client, commands), True

    async def _holds(self, client, message_id: str, events: list[Event]) -> bool:
        """The log already holds exactly these events' last one (an append it refused as a duplicate)."""
        last = events[-1]
        entries = await client.xrange(self.key(message_id), min=f"{last['seq']}-0", max=f"{last['seq']}-0")
        return bool(entries) and Event.from_entry(entries[0][1]).text() == event_text(last)

    @staticmethod
    async def _eval_all(client, commands: list) -> list:
        """One round trip for all the appends (one per node on a cluster); a Redis error reply
        comes back in its place, not raised. A lone append (the common case under light load)
        skips the pipeline's own cost."""
        import redis

        if len(commands) == 1:
            try:
                return [await client.execute_command(*commands[0])]
            except redis.exceptions.ResponseError as exc:  # NoScriptError among them
                return [exc]
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=False)

    async def read(self, message_id: str, after_seq: int, *, block_seconds: float) -> list[Event]:
        if self.mirror is not None:
            held = await self.mirror.read_held(message_id, after_seq, block_seconds=block_seconds)
            if held is not None:
                return held
            # Not here (produced elsewhere, trimmed, or dropped while we waited): ask Redis, once.
            block_seconds = 0 if self.mirror.has(message_id) else block_seconds
        entry = self._client()
        key = self.key(message_id)
        # A Redis that does not answer (a dropped route, a failover) is an unreachable one
        # (TimeoutError) soon after the wait was to end, not a reader stuck in a read.
        async with asyncio.timeout(block_seconds + self.READ_SLACK_SECONDS):
            if block_seconds > 0:
                return await entry.follower.wait(key, after_seq, block_seconds)  # shares a connection
            # XRANGE, not XREAD: its key sits at a fixed place, so a cluster client routes it
            # without asking a server where the keys of the command are.
            entries = await entry.client.xrange(key, min=f"{after_seq + 1}-0", count=1000)
        return [Event.from_entry(fields) for _entry_id, fields in entries]

    async def text_through(self, message_id: str, seq: int) -> int | None:
        # Redis, not the mirror: the mirror keeps only a reply's newest events. A rare path (a
        # stream finished from the stored message), so it reads the events a page at a time.
        client = self._client().client
        key = self.key(message_id)
        chars = 0
        expected = 1
        while expected <= seq:
            entries = await client.xrange(key, min=f"{expected}-0", max=f"{seq}-0", count=1000)
            events = [Event.from_entry(fields) for _entry_id, fields in entries]
            if not events or any(event["seq"] != expected + i for i, event in enumerate(events)):
                return None  # the log lost some of them
            chars += _delta_chars(events)
            expected += len(events)
        return chars

    async def exists(self, message_id: str) -> bool:
        if self.mirror is not None and await self.mirror.exists(message_id):
            return True
        return bool(await self._client().client.exists(self.key(message_id)))

    def expect(self, message_id: str) -> None:
        if self.mirror is not None:
            self.mirror.expect(message_id)

    def abandon(self, message_id: str) -> None:
        if self.mirror is not None:
            self.mirror.abandon(message_id)

    def expected_here(self, message_id: str) -> bool:
        return self.mirror is not None and self.mirror.expected_here(message_id)

    async def finish(self, message_id: str) -> None:
        # Nothing to tell Redis: the append that wrote the terminal event set the TTL (every append
        # does), so a finished reply costs no extra round trip, and cannot fail after its ending.
        self._unsure.discard(message_id)
        if self.mirror is not None:
            await self.mirror.finish(message_id)


async def disconnect_idle(client) -> None:
    """Drop the idle connections of a redis.asyncio client (every node's, on a cluster client)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect(inuse_connections=False)
        return
    for node in client.get_nodes():
        await node.disconnect_free_connections()


_log: StreamLog | None = None
_log_lock = threading.Lock()


def get_stream_log() -> StreamLog:
    global _log
    with _log_lock:
        if _log is None:
            _log = RedisStreamLog(settings.REDIS_URL) if settings.REDIS_URL else MemoryStreamLog()
        return _log
