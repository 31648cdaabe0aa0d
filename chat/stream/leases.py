"""Leases: how a reply's producer says it is alive, and how any process ends a reply whose producer died.

A reply is leased to the process producing it (`Message.producer`, `lease_expires_at`). The
`LeaseKeeper` of that process checkpoints the partial content of every reply it produces and
renews their leases, all in one transaction a second, and keeps a copy of each lease in a Redis
sorted set (`leases_key()`), which lets the sweep find lapsed ones without scanning every workspace
and keeps a reply alive while PostgreSQL is unreachable. A lapsed lease means the producer is
gone: the reader that notices, a cancel waiting for the ending, or the periodic sweep ends the
reply (`end_orphan`), rebuilt from its log (joined deltas are the content), so what readers saw
and what history says stay the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any

from django.conf import settings

from chat.stream import records
from chat.stream.events import make_event
from chat.stream.generation import Generation
from chat.stream.log import TERMINAL_TYPES, StreamLog, async_redis_client
from tenex.outages import log_failure

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0
INTERRUPTED_ERROR = {"code": "interrupted", "message": "The process producing this reply stopped before it finished."}


def leases_key() -> str:
    """A sorted set: lease_member(...) scored by when the lease lapses (one per deployment)."""
    return f"{settings.TENEX_REDIS_PREFIX}:leases"


def lease_member(workspace_id: str, message_id: str) -> str:
    """A reply's entry in `leases_key()`; the sweep splits it back on the first "|"."""
    return f"{workspace_id}|{message_id}"


class LeaseKeeper:
    """Checkpoints and leases of the replies produced here; the sweep and endings of orphans."""

    def __init__(
        self, *, producer_id: str, log: StreamLog, redis_url: str, sync_redis: Callable[[], Any],
        active: Mapping[str, Generation], db: Callable[..., Awaitable[Any]],
        spawn: Callable[[Awaitable[Any]], asyncio.Task],
    ) -> None:
        self.producer_id = producer_id
        self.log = log
        self.redis_url = redis_url
        self.sync_redis = sync_redis
        self.active = active  # the replies this process produces, by message id
        self.db = db  # runs a synchronous database step on the runtime's database threads
        self.spawn = spawn  # starts a task on the runtime loop and keeps it referenced
        self._ended_leases: list[str] = []  # lease_member()s of replies ended here, for the sweep's list
        self._checkpointing: asyncio.Future | None = None  # the checkpoint in flight
        self._async_redis = None

    # --- the leases of replies produced here ------------------------------------------------------
    def track_new(self, workspace_id: str, message_id: str) -> None:
        """Record a new reply's lease in Redis before any producer claims it (from request threads).

        If this process dies between commit and claim, the sweep still finds the reply.
        """
        if self.redis_url:
            expires = time.time() + settings.TENEX_STREAM_LEASE_SECONDS
            self.sync_redis().zadd(leases_key(), {lease_member(workspace_id, message_id): expires})

    def lease_ended(self, workspace_id: str, message_id: str) -> None:
        """A reply produced here has ended: take it off the sweep's list with the next checkpoint,
        together with every other reply that ended meanwhile (one Redis call a second, not one per
        reply). Until then the sweep finds the reply ended and lets it be."""
        if self.redis_url:
            self._ended_leases.append(lease_member(workspace_id, message_id))

    async def checkpoint_forever(self) -> None:
        """Once a second, persist the partial content of every reply produced here and renew leases.

        All of them in one transaction and one Redis call, however many replies are open, so that
        a thousand slow streams cost one commit a second, not a thousand.
        """
        lease = settings.TENEX_STREAM_LEASE_SECONDS
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            await self.forget_ended_leases()
            now = time.monotonic()
            due = [
                generation
                for generation in self.active.values()
                if generation.claimed
                and (generation.state.version != generation.saved_version or now - generation.renewed_at >= lease / 3)
            ]
            if due and (self._checkpointing is None or self._checkpointing.done()):
                # Not awaited: a checkpoint stuck on an unreachable database (until the pool gives
                # up) must not hold back the renewal below.
                self._checkpointing = self.spawn(self.checkpoint(due))
            # Every reply produced here is alive, written to or not (one finishing waits for its
            # ending's write): its lease in Redis says so even while PostgreSQL is unreachable.
            await self.track_leases([(g.workspace_id, g.message_id) for g in self.active.values() if not g.lost])

    async def checkpoint(self, due: list[Generation]) -> None:
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
                    records.GenerationState(seq=state.seq, content=state.content, tool_calls=list(state.tool_calls)),
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
                generation.lose()

    async def track_leases(self, replies: list[tuple[str, str]]) -> None:
        """Renew the sweep's copy of these leases in Redis (best effort: the database lease is the truth)."""
        if not self.redis_url or not replies:
            return
        expires = time.time() + settings.TENEX_STREAM_LEASE_SECONDS
        try:
            await self._lease_client().zadd(leases_key(), {lease_member(*reply): expires for reply in replies})
        except Exception as exc:  # noqa: BLE001 - readers still end a lapsed reply by its database lease
            log_failure(logger, "could not renew %d leases in Redis", len(replies), exc=exc)

    async def forget_ended_leases(self) -> None:
        ended, self._ended_leases = self._ended_leases, []
        if ended:
            with suppress(Exception):  # left for the sweep, which drops the entries of ended replies
                await self._lease_client().zrem(leases_key(), *ended)

    async def untrack_lease(self, workspace_id: str, message_id: str) -> None:
        if not self.redis_url:
            return
        with suppress(Exception):
            await self._lease_client().zrem(leases_key(), lease_member(workspace_id, message_id))

    def _lease_client(self):
        if self._async_redis is None:
            self._async_redis = async_redis_client(self.redis_url)
        return self._async_redis

    async def _lease_alive(self, workspace_id: str, message_id: str) -> bool:
        if not self.redis_url:
            return False
        expires = await self._lease_client().zscore(leases_key(), lease_member(workspace_id, message_id))
        return expires is not None and expires > time.time()

    # --- orphans: replies whose producer is gone ------------------------------------------------
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
            rebuilt = rebuilt_from_log(logged)
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
        await self.untrack_lease(workspace_id, message_id)
        return message

    async def _record_logged_ending(self, workspace_id: str, message_id: str, logged: list[dict]) -> dict | None:
        """Record the ending a log holds but the row lacks (published while PostgreSQL was down by a
        producer that died before it could write it)."""
        ending = logged[-1]
        recorded = ending.get("message") or {}
        status = recorded.get("status") or ("failed" if ending["type"] == "error" else "complete")
        rebuilt = rebuilt_from_log(logged)
        rebuilt.usage = recorded.get("usage") or {}
        message = await self.db(records.finalize, workspace_id, message_id, None, rebuilt, status, ending.get("error"))
        await self.untrack_lease(workspace_id, message_id)
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
            due = await self._lease_client().zrangebyscore(leases_key(), "-inf", time.time())
            pairs = [member.decode().split("|", 1) for member in due]
        else:
            pairs = []
            for workspace_id in await self.db(records.streaming_workspaces):
                for message_id in await self.db(records.expired_streaming_messages, workspace_id):
                    pairs.append([workspace_id, message_id])
        for workspace_id, message_id in pairs:
            state = await self.db(records.message_state, workspace_id, message_id)
            if state is None or state.status != "streaming":
                await self.untrack_lease(workspace_id, message_id)
                continue
            if state.lease_expired and await self.end_orphan(
                workspace_id, message_id, "interrupted", INTERRUPTED_ERROR
            ):
                ended += 1
        return ended

    async def sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried on the next tick
                log_failure(logger, "stream sweep failed", exc=exc)
            await asyncio.sleep(settings.TENEX_SWEEP_SECONDS)


def rebuilt_from_log(logged: list[dict]) -> records.GenerationState:
    """A reply's state as its log tells it: the joined deltas and the tool calls' last word."""
    rebuilt = records.GenerationState(seq=logged[-1]["seq"])
    for event in logged:
        if event["type"] == "delta":
            rebuilt.content += event["delta"] or ""
        elif event["type"] == "tool_call":
            rebuilt.record_tool_call(event["tool_call"])
    return rebuilt
