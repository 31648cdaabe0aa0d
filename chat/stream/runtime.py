"""The generation runtime: one background event loop per process that produces replies.

A reply never runs inside an HTTP request's coroutine. `start` hands the message to this loop after
the request's transaction committed; the loop appends events to the stream log, checkpoints the
message row at least once a second (renewing its lease), honours cancel signals from any process,
and records the outcome in one transaction before publishing the final `done` or `error` event.

A producer that dies stops renewing its lease. Any process then ends the message as `interrupted`:
a reader that finds the lease expired, or the periodic sweep. The ending is rebuilt from the log
(joined deltas are the content), so what readers saw and what history says stay the same.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections

from agents.providers import get_provider
from agents.providers.base import ProviderError, TextDelta, Usage
from agents.runtime import ToolCallUpdate, run_assistant
from chat.files import files_cleanup
from chat.stream import records
from chat.stream.endings import DATABASE_UNAVAILABLE_ERROR, OutageOutlasted, record_when_back, retry_through_outage
from chat.stream.events import make_event
from chat.stream.log import CANCEL_REQUESTED, TERMINAL_TYPES, async_redis_client, cancel_key, get_stream_log
from tenex.database_breaker import breaker
from tenex.outages import log_failure

logger = logging.getLogger(__name__)

def cancel_channel() -> str:
    return f"{settings.TENEX_REDIS_PREFIX}:cancel"


def leases_key() -> str:
    """A sorted set: lease_member(...) scored by when the lease lapses (one per deployment)."""
    return f"{settings.TENEX_REDIS_PREFIX}:leases"


CHECKPOINT_SECONDS = 1.0
FILE_CLEANUP_SECONDS = 3600.0


def lease_member(workspace_id: str, message_id: str) -> str:
    """A reply's entry in `leases_key()`; the sweep splits it back on the first "|"."""
    return f"{workspace_id}|{message_id}"


def utf8_safe(text: str) -> str:
    """`text`, with any lone surrogate (a provider's JSON may carry "\\ud800") replaced by "?":
    the log, the wire and the database all need text that encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text


@dataclass
class ActiveGeneration:
    workspace_id: str
    message_id: str
    thread_id: str = ""
    created_at: datetime | None = None  # the reply's: its ending is recorded without reading it back
    stopped: bool = False  # cancelled, lost, or out of time: produce no more
    consuming: asyncio.Task | None = None  # the provider loop, while it runs
    state: records.GenerationState = field(default_factory=records.GenerationState)
    lost: bool = False  # another process ended this message (our lease had lapsed)
    stopping: bool = False  # the process is exiting and could not wait for this reply to finish
    recorded_later: bool = False  # ended in the log; its row waits for PostgreSQL (endings.record_when_back)
    # Events published but not yet in the log, in seq order; `in_flight` while a batch is on its way.
    pending: list[dict] = field(default_factory=list)
    in_flight: bool = False
    publish_error: Exception | None = None
    # Checkpoint bookkeeping, kept by the runtime's one checkpointer.
    claimed: bool = False
    saved_version: int = -1
    renewed_at: float = field(default_factory=time.monotonic)

    def stop(self) -> None:
        """Stop producing (cancels the provider call at its next await); safe to call again."""
        self.stopped = True
        if self.consuming is not None and not self.consuming.done():
            self.consuming.cancel()


class GenerationRuntime:
    def __init__(self) -> None:
        self.producer_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.log = get_stream_log()
        self.redis_url = settings.REDIS_URL
        self.active: dict[str, ActiveGeneration] = {}
        self._tasks: set[asyncio.Task] = set()
        self._early_cancels: dict[str, float] = {}
        # Generations with events to write, in the order they published, and the one task writing them.
        self._unflushed: dict[str, ActiveGeneration] = {}
        self._ended_leases: list[str] = []  # lease_member()s of replies ended here, for the sweep's list
        self._flusher: asyncio.Task | None = None
        self._checkpointing: asyncio.Future | None = None  # the checkpoint in flight
        # Database steps, and (the loop's default executor) the tools' synchronous work: sized in
        # settings so that, with every other thread that may hold a connection, they fit the pool.
        self._db = ThreadPoolExecutor(
            max_workers=settings.TENEX_GENERATION_DB_THREADS, thread_name_prefix="tenex-generation-db"
        )
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(
            ThreadPoolExecutor(max_workers=settings.TENEX_TOOL_THREADS, thread_name_prefix="tenex-tools")
        )
        self._thread = threading.Thread(target=self._run_loop, name="tenex-generation", daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait()
        self._sync_redis: dict[str, Any] = {}
        self._stopped = False
        self._sync_redis_lock = threading.Lock()

    # --- plumbing -----------------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self._sweeper = self._keep(self.loop.create_task(self._sweep_forever()))
        self._checkpointer = self._keep(self.loop.create_task(self._checkpoint_forever()))
        if self.redis_url:
            self._keep(self.loop.create_task(self._listen_for_cancels()))
        self.loop.run_forever()

    def _keep(self, task: asyncio.Task) -> asyncio.Task:
        # The loop holds tasks only weakly: without a reference a pending task can be collected.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def drain(self, seconds: float) -> None:
        """At exit: let the replies in progress finish for up to `seconds`, then end the rest as
        `interrupted` at once (their readers get `error` now, not when the lease lapses)."""
        # No more sweeps: the thread pools they need close right after this. Wait until the loop
        # has stopped the sweeper (a sweep it was about to start would find the pools closed).
        self._stop_task(self._sweeper)
        try:
            deadline = time.monotonic() + seconds
            while self.active and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.active:
                return
            logger.warning("ending %d replies still in progress as interrupted", len(self.active))
            self.loop.call_soon_threadsafe(self._stop_all)
            deadline = time.monotonic() + 5
            while self.active and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            # The checkpointer renewed the leases of the replies that were finishing; nothing is left
            # but to take the replies that ended since its last round off the sweep's list.
            self._stop_task(self._checkpointer)
            with suppress(Exception):
                self.submit(self._forget_ended_leases()).result(timeout=2)

    def _stop_task(self, task: asyncio.Task) -> None:
        """Cancel one of the loop's own tasks from another thread and wait (briefly) until it has ended."""

        async def stop() -> None:
            task.cancel()
            with suppress(BaseException):
                await task

        with suppress(Exception):
            self.submit(stop()).result(timeout=2)

    def _stop_all(self) -> None:
        for generation in self.active.values():
            generation.stopping = True
            generation.stop()

    def shutdown(self) -> None:
        """Stop the loop's tasks and the loop (at interpreter exit); once."""
        if self._stopped:
            return
        self._stopped = True

        async def stop_tasks() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with suppress(Exception):
            self.submit(stop_tasks()).result(timeout=2)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def submit(self, coroutine) -> asyncio.Future[Any]:
        """Run a coroutine on the runtime loop from any thread or loop."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def db(self, function: Callable, *args: Any) -> Any:
        """Run a synchronous database step on the runtime's own worker threads."""
        return await self.loop.run_in_executor(self._db, partial(self._db_call, function, *args))

    @staticmethod
    def _db_call(function: Callable, *args: Any) -> Any:
        close_old_connections()
        try:
            return breaker.call(function, *args)  # refused at once while PostgreSQL is known down
        finally:
            if connections["default"].vendor == "postgresql":
                connections["default"].close()  # back to the pool between steps

    def redis(self):
        """A synchronous Redis client for callers outside the loop (views), per configured URL."""
        import redis

        url = settings.REDIS_URL or self.redis_url
        with self._sync_redis_lock:
            client = self._sync_redis.get(url)
            if client is None:
                client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
                self._sync_redis[url] = client
            return client

    # --- starting and cancelling --------------------------------------------------------------
    def track_new(self, workspace_id: str, message_id: str) -> None:
        """Record a new reply's lease in Redis before any producer claims it (from request threads).

        If this process dies between commit and claim, the sweep still finds the reply.
        """
        if self.redis_url:
            expires = time.time() + settings.TENEX_STREAM_LEASE_SECONDS
            self.redis().zadd(leases_key(), {lease_member(workspace_id, message_id): expires})

    def start(self, workspace_id: str, message_id: str, loaded: records.GenerationInput) -> None:
        """Produce a reply this process leased at insert (`records.generation_input` read its input)."""
        # Before the request that sent the message starts reading it: its reader waits here, not in Redis.
        self.log.expect(message_id)
        self.loop.call_soon_threadsafe(
            lambda: self._keep(self.loop.create_task(self._generate(workspace_id, message_id, loaded)))
        )

    def request_cancel(self, message_id: str) -> None:
        """Ask whichever process produces this message to stop (safe to call from any thread)."""
        self.loop.call_soon_threadsafe(self._cancel_local, message_id)
        if self.redis_url:
            client = self.redis()
            client.set(cancel_key(message_id), "1", ex=3600)
            client.publish(cancel_channel(), message_id)

    def _cancel_local(self, message_id: str) -> None:
        generation = self.active.get(message_id)
        if generation is not None:
            generation.stop()
        else:
            # The cancel may beat the generation's start on this loop: remember it for a while.
            self._early_cancels[message_id] = time.monotonic()
            if len(self._early_cancels) > 10_000:
                oldest = sorted(self._early_cancels, key=self._early_cancels.get)[:5_000]
                for stale in oldest:
                    self._early_cancels.pop(stale, None)

    async def _listen_for_cancels(self) -> None:
        import redis.asyncio as aioredis

        while True:
            # A client per attempt (its connections from before a Redis restart are dead), closed
            # with the attempt: one left open at each retry of an outage would outlive it.
            client = aioredis.Redis.from_url(self.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(cancel_channel())
                    # Notices published while we were not subscribed (Redis restarting) are lost;
                    # the cancel marks are not: a reply with no append to come soon must not miss one.
                    for message_id in list(self.active):
                        if await client.exists(cancel_key(message_id)):
                            self._cancel_local(message_id)
                    async for item in pubsub.listen():
                        if item.get("type") == "message":
                            data = item["data"]
                            self._cancel_local(data.decode() if isinstance(data, bytes) else data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening through Redis restarts
                log_failure(logger, "cancel listener lost Redis; retrying", exc=exc)
                await asyncio.sleep(1)
            finally:
                with suppress(Exception):
                    await client.aclose()

    def _cancel_was_requested(self, message_id: str) -> bool:
        # A cancel this process heard of before the reply started here. One it missed (its pub/sub
        # notice lost to a Redis blip) stops the reply at its next append, which sees the cancel mark.
        return self._early_cancels.pop(message_id, None) is not None

    # --- producing ----------------------------------------------------------------------------
    def _publish(self, generation: ActiveGeneration, kind: str, **payload: Any) -> None:
        """Number the event and queue it for the log; the process's one flusher writes the queues.

        Group commit: while one round of appends is on its way to the log, the events every reply
        produces meanwhile wait and go together in the next round (one pipeline for all replies),
        so a fast provider costs one round trip per batch, not per token, and a slow one still
        sends each token the moment it exists.
        """
        state = generation.state
        state.seq += 1
        generation.pending.append(
            make_event(state.seq, kind, message_id=generation.message_id, thread_id=generation.thread_id, **payload)
        )
        self._schedule_flush(generation)

    def _schedule_flush(self, generation: ActiveGeneration) -> None:
        self._unflushed[generation.message_id] = generation
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        while self._unflushed:
            generations = [g for g in self._unflushed.values() if g.pending and not g.lost and g.publish_error is None]
            self._unflushed.clear()
            if not generations:
                continue
            batches = []
            for generation in generations:
                batch, generation.pending = generation.pending, []
                generation.in_flight = True
                batches.append((generation.message_id, batch))
            try:
                results = await self.log.append_many(batches)
            except Exception as exc:  # noqa: BLE001 - the log is unreachable: every batch failed
                results = [exc] * len(batches)
            for generation, (_message_id, batch), result in zip(generations, batches, results, strict=True):
                generation.in_flight = False
                if isinstance(result, Exception):
                    generation.pending[:0] = batch  # kept, in order, for `_drain` to retry
                    generation.publish_error = result
                    generation.stop()  # stop producing what could not be delivered
                elif not result:
                    generation.lost = True  # another process ended this message: its ending stands
                    generation.stop()
                elif result == CANCEL_REQUESTED:
                    generation.stop()  # idempotent: the ending's own append may answer this too

    async def _drain(self, generation: ActiveGeneration) -> None:
        """Wait until every published event is in the log, retrying once after a failed round;
        raise what stopped the log taking them."""
        if generation.publish_error is not None and generation.pending:
            generation.publish_error = None
            self._schedule_flush(generation)
        while (generation.pending or generation.in_flight) and generation.publish_error is None and not generation.lost:
            if self._flusher is None or self._flusher.done():
                self._schedule_flush(generation)
            await asyncio.shield(self._flusher)
        if generation.publish_error is not None:
            raise generation.publish_error

    async def _generate(self, workspace_id: str, message_id: str, loaded: records.GenerationInput) -> None:
        generation = ActiveGeneration(
            workspace_id=workspace_id, message_id=message_id, thread_id=loaded.thread_id, created_at=loaded.created_at
        )
        self.active[message_id] = generation
        try:
            generation.claimed = True  # from now on the checkpointer saves it and renews its lease
            if self._cancel_was_requested(message_id):
                generation.stop()
            try:
                status, error = await self._produce(generation, loaded)
            finally:
                generation.claimed = False
            if generation.publish_error is not None:
                # The log stopped taking events: the reply ends with what it has, every word of it
                # in the database, from where readers finish their streams.
                logger.error("the stream log refused the events of %s: %r", message_id, generation.publish_error)
                status, error = "failed", STREAM_UNAVAILABLE_ERROR
            elif generation.stopping:
                status, error = "interrupted", INTERRUPTED_ERROR
            if not generation.lost:
                await self._finish(generation, status, error)
        except Exception:  # noqa: BLE001 - never leave a message streaming because of a bug here
            logger.exception("generation of %s failed", message_id)
            if not generation.lost:
                with suppress(Exception):
                    await self._finish(
                        generation, "failed",
                        {"code": "internal_error", "message": "The assistant failed unexpectedly."},
                    )
        finally:
            self.active.pop(message_id, None)
            if generation.state.seq == 0:
                self.log.abandon(message_id)  # nothing produced here: readers look in Redis
            if self.redis_url and not generation.recorded_later:
                # Taken off the sweep's list with the next checkpoint, together with every other
                # reply that ended meanwhile: one Redis call a second, not one per reply. Until then
                # the sweep finds the reply ended and lets it be.
                self._ended_leases.append(lease_member(workspace_id, message_id))

    async def _produce(self, generation: ActiveGeneration, loaded: records.GenerationInput) -> tuple[str, dict | None]:
        """Run the assistant until it ends or the generation is cancelled (which cancels the provider call)."""
        consuming = generation.consuming = asyncio.ensure_future(self._consume(generation, loaded))
        if generation.stopped:
            consuming.cancel()  # cancelled before it started
        try:
            await asyncio.wait((consuming,))  # this task cancelled (the process stops): so is the provider call
        except asyncio.CancelledError:
            consuming.cancel()
            with suppress(asyncio.CancelledError):
                await consuming
            raise
        finally:
            generation.consuming = None
        if consuming.cancelled():
            return ("interrupted", None) if generation.lost else ("cancelled", None)
        return consuming.result()

    async def _consume(self, generation: ActiveGeneration, loaded: records.GenerationInput) -> tuple[str, dict | None]:
        state = generation.state
        events = run_assistant(loaded.request, get_provider())
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    text = utf8_safe(event.text)
                    # State first, then the log: content is always exactly the joined deltas.
                    state.content += text
                    state.version += 1
                    self._publish(generation, "delta", delta=text)
                elif isinstance(event, ToolCallUpdate):
                    state.record_tool_call(event.envelope)
                    self._publish(generation, "tool_call", tool_call=event.envelope)
                elif isinstance(event, Usage):
                    state.usage = {"input_tokens": event.input_tokens, "output_tokens": event.output_tokens}
        except ProviderError as exc:
            return "failed", {"code": exc.code, "message": exc.message}
        finally:
            with suppress(BaseException):
                await events.aclose()
        return "complete", None

    async def _finish(self, generation: ActiveGeneration, status: str, error: dict | None) -> None:
        # The outcome is recorded with the number its terminal event is about to take.
        outcome = replace(generation.state, seq=generation.state.seq + 1)
        known = (generation.thread_id, generation.created_at)
        record = partial(records.finalize, generation.workspace_id, generation.message_id, self.producer_id, outcome)
        try:
            message = await retry_through_outage(
                self.db, record, status, error, known, bound=settings.TENEX_STREAM_DB_OUTAGE_SECONDS
            )
        except OutageOutlasted:
            # Readers get the ending (and every word) now; the row, when PostgreSQL is back.
            status, error = "failed", DATABASE_UNAVAILABLE_ERROR
            message = records.ending_message(
                generation.workspace_id, generation.message_id, outcome, status, error, known
            )
            reply = (generation.workspace_id, generation.message_id)
            generation.recorded_later = True
            self._keep(self.loop.create_task(record_when_back(
                self.db, record, status, error, known,
                keep_lease=partial(self._track_leases, [reply]), forget_lease=partial(self._untrack_lease, *reply),
            )))
        if message is None:
            return  # another process ended it (our lease lapsed); its ending stands
        if error is None:
            self._publish(generation, "done", message=message)
        else:
            self._publish(generation, "error", message=message, error=error)
        try:
            await self._drain(generation)
        except Exception as exc:  # noqa: BLE001 - the log is unreachable; the ending is in the database
            logger.warning("the ending of %s is not in its log (%r); readers take it from the database",
                           generation.message_id, exc)
        await self.log.finish(generation.message_id)

    async def _checkpoint_forever(self) -> None:
        """Once a second, persist the partial content of every reply produced here and renew leases.

        All of them in one transaction and one Redis call, however many replies are open, so that
        a thousand slow streams cost one commit a second, not a thousand.
        """
        lease = settings.TENEX_STREAM_LEASE_SECONDS
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            await self._forget_ended_leases()
            now = time.monotonic()
            due = [
                generation
                for generation in self.active.values()
                if generation.claimed
                and not generation.lost
                and (generation.state.version != generation.saved_version or now - generation.renewed_at >= lease / 3)
            ]
            if due and (self._checkpointing is None or self._checkpointing.done()):
                # Not awaited: a checkpoint stuck on an unreachable database (until the pool gives
                # up) must not hold back the renewal below.
                self._checkpointing = self._keep(asyncio.ensure_future(self._checkpoint(due)))
            # Every reply produced here is alive, written to or not (one finishing waits for its
            # ending's write): its lease in Redis says so even while PostgreSQL is unreachable.
            await self._track_leases([(g.workspace_id, g.message_id) for g in self.active.values() if not g.lost])

    async def _checkpoint(self, due: list[ActiveGeneration]) -> None:
        """Save these replies' partial content and renew their database leases, in one transaction."""
        snapshots = []
        versions = {}
        for generation in due:
            state = generation.state
            versions[generation.message_id] = state.version
            snapshots.append(
                (
                    generation.workspace_id,
                    generation.message_id,
                    records.GenerationState(
                        seq=state.seq, content=state.content, tool_calls=list(state.tool_calls)
                    ),
                )
            )
        try:
            owned = await self.db(records.checkpoint_many, self.producer_id, snapshots)
        except Exception as exc:  # noqa: BLE001 - retried next tick; the Redis lease keeps the replies meanwhile
            log_failure(logger, "checkpoint of %d replies failed", len(due), exc=exc)
            return
        renewed = time.monotonic()
        for generation in due:
            if generation.message_id in owned:
                generation.saved_version = versions[generation.message_id]
                generation.renewed_at = renewed
            elif generation.claimed:  # not a reply that ended meanwhile: another process took it
                generation.lost = True
                generation.stop()

    # --- leases and orphans -------------------------------------------------------------------
    async def _track_leases(self, replies: list[tuple[str, str]]) -> None:
        """Renew the sweep's copy of these leases in Redis (best effort: the database lease is the truth)."""
        if not self.redis_url or not replies:
            return
        expires = time.time() + settings.TENEX_STREAM_LEASE_SECONDS
        try:
            await self._lease_client().zadd(leases_key(), {lease_member(*reply): expires for reply in replies})
        except Exception as exc:  # noqa: BLE001 - readers still end a lapsed reply by its database lease
            log_failure(logger, "could not renew %d leases in Redis", len(replies), exc=exc)

    async def _forget_ended_leases(self) -> None:
        ended, self._ended_leases = self._ended_leases, []
        if ended:
            with suppress(Exception):  # left for the sweep, which drops the entries of ended replies
                await self._lease_client().zrem(leases_key(), *ended)

    async def _untrack_lease(self, workspace_id: str, message_id: str) -> None:
        if not self.redis_url:
            return
        with suppress(Exception):
            await self._lease_client().zrem(leases_key(), lease_member(workspace_id, message_id))

    def _lease_client(self):
        if getattr(self, "_async_redis", None) is None:
            self._async_redis = async_redis_client(self.redis_url)
        return self._async_redis

    async def end_orphan(self, workspace_id: str, message_id: str, status: str, error: dict | None) -> dict | None:
        """End a streaming message whose producer is gone: rebuild it from the log, record, publish."""
        if message_id in self.active:
            return None  # produced here and alive
        if await self._lease_alive(workspace_id, message_id):
            return None  # its producer renews it in Redis: alive, only cut off from PostgreSQL
        state = await self.db(records.message_state, workspace_id, message_id)
        if state is None or state.status != "streaming":
            return None
        rebuilt = records.GenerationState(content=state.content, tool_calls=state.tool_calls, seq=state.last_seq)
        logged = await self.log.read(message_id, 0, block_seconds=0)
        if logged and logged[-1]["type"] in TERMINAL_TYPES:
            return await self._record_logged_ending(workspace_id, message_id, logged)
        if logged:
            rebuilt = self._rebuilt(logged)
        elif rebuilt.content:
            # The log is gone (its process died with it): publish the checkpointed text as one
            # delta first, so that joined deltas still equal the stored content.
            rebuilt.seq = 1
            delta = make_event(1, "delta", message_id=message_id, thread_id=state.thread_id, delta=rebuilt.content)
            if not await self.log.append(message_id, [delta]):
                return None
        rebuilt.seq += 1
        message = await self.db(records.finalize, workspace_id, message_id, None, rebuilt, status, error)
        if message is None:
            return None
        kind = "error" if error is not None else "done"
        event = make_event(
            rebuilt.seq, kind, message_id=message_id, thread_id=state.thread_id, message=message, error=error
        )
        await self.log.append(message_id, [event])
        await self.log.finish(message_id)
        await self._untrack_lease(workspace_id, message_id)
        return message

    async def _lease_alive(self, workspace_id: str, message_id: str) -> bool:
        if not self.redis_url:
            return False
        expires = await self._lease_client().zscore(leases_key(), lease_member(workspace_id, message_id))
        return expires is not None and expires > time.time()

    @staticmethod
    def _rebuilt(logged: list[dict]) -> records.GenerationState:
        """A reply's state as its log tells it: the joined deltas and the tool calls' last word."""
        rebuilt = records.GenerationState(seq=logged[-1]["seq"])
        for event in logged:
            if event["type"] == "delta":
                rebuilt.content += event["delta"] or ""
            elif event["type"] == "tool_call":
                rebuilt.record_tool_call(event["tool_call"])
        return rebuilt

    async def _record_logged_ending(self, workspace_id: str, message_id: str, logged: list[dict]) -> dict | None:
        """Record the ending a log holds but the row lacks (published while PostgreSQL was down by a
        producer that died before it could write it)."""
        ending = logged[-1]
        recorded = ending.get("message") or {}
        status = recorded.get("status") or ("failed" if ending["type"] == "error" else "complete")
        rebuilt = self._rebuilt(logged)
        rebuilt.usage = recorded.get("usage") or {}
        message = await self.db(records.finalize, workspace_id, message_id, None, rebuilt, status, ending.get("error"))
        await self._untrack_lease(workspace_id, message_id)
        return message

    async def await_ending(self, workspace_id: str, message_id: str, orphan_status: str) -> None:
        """Wait until the message has ended; end it ourselves if its producer's lease lapses first."""
        after = 0
        last_check = 0.0
        deadline = time.monotonic() + 3 * settings.TENEX_STREAM_LEASE_SECONDS
        while time.monotonic() < deadline:
            events = await self.log.read(message_id, after, block_seconds=0.25)
            if events:
                after = events[-1]["seq"]
                if events[-1]["type"] in TERMINAL_TYPES:
                    return
                continue
            if time.monotonic() - last_check < 1.0:
                continue
            last_check = time.monotonic()
            state = await self.db(records.message_state, workspace_id, message_id)
            if state is None or state.status != "streaming":
                return
            if state.lease_expired:
                await self.end_orphan(workspace_id, message_id, orphan_status, None)
                return

    async def interrupt_if_expired(self, workspace_id: str, message_id: str) -> None:
        state = await self.db(records.message_state, workspace_id, message_id)
        if state is not None and state.lease_expired:
            await self.end_orphan(workspace_id, message_id, "interrupted", INTERRUPTED_ERROR)

    async def sweep(self) -> int:
        """End every message whose producer's lease lapsed. Returns how many were ended."""
        ended = 0
        if self.redis_url:
            client = self._lease_client()
            due = await client.zrangebyscore(leases_key(), "-inf", time.time())
            pairs = [member.decode().split("|", 1) for member in due]
        else:
            pairs = []
            for workspace_id in await self.db(records.streaming_workspaces):
                for message_id in await self.db(records.expired_streaming_messages, workspace_id):
                    pairs.append([workspace_id, message_id])
        for workspace_id, message_id in pairs:
            state = await self.db(records.message_state, workspace_id, message_id)
            if state is None or state.status != "streaming":
                await self._untrack_lease(workspace_id, message_id)
                continue
            if state.lease_expired and await self.end_orphan(
                workspace_id, message_id, "interrupted", INTERRUPTED_ERROR
            ):
                ended += 1
        return ended

    async def _sweep_forever(self) -> None:
        last_file_cleanup = 0.0
        while True:
            try:
                await self.sweep()
                if time.monotonic() - last_file_cleanup >= FILE_CLEANUP_SECONDS:
                    last_file_cleanup = time.monotonic()
                    # Uploads never attached within 24 h go (also `manage.py cleanup_files`).
                    await self.db(files_cleanup)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried on the next tick
                log_failure(logger, "stream sweep failed", exc=exc)
            await asyncio.sleep(settings.TENEX_SWEEP_SECONDS)


STREAM_UNAVAILABLE_ERROR = {
    "code": "stream_unavailable",
    "message": "The stream store stopped accepting the reply; it ended with the text written so far.",
}
INTERRUPTED_ERROR = {"code": "interrupted", "message": "The process producing this reply stopped before it finished."}

_runtime: GenerationRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> GenerationRuntime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = GenerationRuntime()
            # Before the interpreter stops thread pools (concurrent.futures refuses new work from
            # then on, and the replies' database steps need it): finish what is in progress.
            # `threading._register_atexit` is CPython's hook for exactly that (3.9+); without it,
            # a plain atexit hook still drains, only after the pools have closed.
            register = getattr(threading, "_register_atexit", atexit.register)
            register(partial(_runtime.drain, settings.TENEX_SHUTDOWN_DRAIN_SECONDS))
            atexit.register(_runtime.shutdown)
        return _runtime
