"""Reading a message's stream as Server-Sent Events. Readers only read the log; they never produce.

A reader replays what the log holds after `Last-Event-ID`, then follows it live. While idle it sends
`: ping` comments and checks the message row: a lapsed producer lease is ended as `interrupted`
(by this process, on the runtime loop), and a finished message whose log has expired is replayed
from the stored message. Every stream ends with `done` or `error`.

Through an outage of either store the reader keeps pinging: an unreachable log is a quiet one (the
row may hold the ending, and its content the text the reader lacks), an unreadable row is an
unknown one (the log may still bring the ending). No store error ends a stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import Error as DatabaseError
from django.http import StreamingHttpResponse

from chat.stream import records
from chat.stream.events import PING, RETRY_HINT, encode_sse, make_event
from chat.stream.log import TERMINAL_TYPES, get_stream_log
from chat.stream.runtime import get_runtime
from tenex.database_breaker import breaker
from tenex.redis_clients import STORE_ERRORS

# How long a finished message may lack its terminal event in the log before we answer from the row.
TERMINAL_GRACE_SECONDS = 3.0
# The first pause between looks while the log is unreachable; each next one is twice as long (up to
# the row-check period).
DOWN_FIRST_PAUSE_SECONDS = 0.25

logger = logging.getLogger(__name__)
# What a database step raises when PostgreSQL cannot be reached (or the pool had no connection in time).
DATABASE_ERRORS = (DatabaseError,)

# A few threads of their own (counted in the database pool's size): a stream is served from the
# event loop and owns no thread; only its occasional look at the message row needs one.
_message_state = DatabaseSyncToAsync(
    partial(breaker.call, records.message_state), thread_sensitive=False,
    executor=ThreadPoolExecutor(max_workers=settings.TENEX_STREAM_DB_THREADS, thread_name_prefix="tenex-stream-db"),
)


def fallback_events(state: records.MessageState, message_id: str, after_seq: int, delivered: int | None) -> list[dict]:
    """Events rebuilt from the stored message when its log cannot finish the stream: the text the
    reader lacks as one delta, then the ending.

    `delivered` is how many characters of the content the reader's deltas (through `after_seq`) gave
    it; None when nothing left can tell (a resumed reader whose log is gone): then only the ending,
    whose `message` carries the whole content.
    """
    kind = "error" if state.message and state.message.get("error") else "done"
    extra = {"error": state.message["error"]} if kind == "error" else {}
    events = []
    seq = after_seq
    rest = state.content[delivered:] if delivered is not None else ""
    if rest:
        seq += 1
        events.append(make_event(seq, "delta", message_id=message_id, thread_id=state.thread_id, delta=rest))
    seq = max(seq + 1, state.last_seq)
    events.append(
        make_event(seq, kind, message_id=message_id, thread_id=state.thread_id, message=state.message, **extra)
    )
    return events


async def _read(log, message_id: str, after_seq: int, wait: float) -> list[dict] | None:
    """`log.read`, or None as soon as the log turns out unreachable (Redis down, restarting, or failing
    over); never much longer than `wait`. A reader whose log is unreachable still owes its client a
    `: ping` on time and a look at the message row, which may hold the ending."""
    try:
        return await log.read(message_id, after_seq, block_seconds=wait)  # bounded by the log itself
    except (*STORE_ERRORS, OSError) as exc:  # TimeoutError is an OSError
        logger.info("the stream log of %s is unreachable: %r", message_id, exc)
        return None


class _RowUnknown(Exception):
    """The message row could not be read in time (the database is down or slow)."""


class ReplyReader:
    """Follows one reply for one client: the log while it answers, the message row when it does not.

    The log is the live source; the row (checked while the log is quiet) tells whether the reply
    has ended, and its stored content repairs what the log lost or cannot give now. Neither store
    being unreachable ends the stream: the reader keeps pinging until one of them tells the ending.
    """

    def __init__(self, workspace_id: str, message_id: str, after_seq: int):
        self.workspace_id = workspace_id
        self.message_id = message_id
        self.after_seq = after_seq
        self.log = get_stream_log()
        self.ping_every = settings.TENEX_STREAM_PING_SECONDS
        self.check_every = max(1.0, settings.TENEX_STREAM_LEASE_SECONDS / 2)
        self.last_seq = after_seq
        self.sent_chars = 0  # the text of the deltas this reader has handed out
        self.last_sent = time.monotonic()
        self.final_seen_at: float | None = None
        # The log skipped events (Redis lost them: restarted empty, failed over, trimmed): nothing after
        # the gap is sent, the stored message finishes the stream once it has ended.
        self.gap = False
        self.log_down = False  # the last read could not reach the log
        self.down_pause = DOWN_FIRST_PAUSE_SECONDS
        self._row_check: asyncio.Future | None = None  # a look at the row still on its way

    def _quiet_for(self) -> float:
        """How long the next wait may last: until the next row check or ping, whichever is first."""
        return max(0.05, min(self.check_every, self.ping_every - (time.monotonic() - self.last_sent)))

    def _ping_due(self) -> bool:
        return time.monotonic() - self.last_sent >= self.ping_every - 0.05

    def _take(self, events: list[dict]) -> list[dict]:
        """The events that follow on from what was sent, up to the ending; marks a gap."""
        batch = []
        for event in events:
            if event["seq"] <= self.last_seq:
                continue
            if event["seq"] != self.last_seq + 1:
                self.gap = True
                break
            batch.append(event)
            self.last_seq = event["seq"]
            if event["type"] == "delta":
                self.sent_chars += len(event["delta"])
            if event["type"] in TERMINAL_TYPES:
                break
        return batch

    async def _row(self) -> records.MessageState | None:
        """The message row; raises _RowUnknown when it cannot be read before the next ping is due
        (the look stays on its way, and the next call waits for the same one)."""
        if self._row_check is None:
            self._row_check = asyncio.ensure_future(_message_state(self.workspace_id, self.message_id))
        wait = max(0.05, self.ping_every - (time.monotonic() - self.last_sent))
        done, _ = await asyncio.wait((self._row_check,), timeout=wait)
        if not done:
            raise _RowUnknown
        check, self._row_check = self._row_check, None
        try:
            return check.result()
        except DATABASE_ERRORS as exc:
            logger.info("the row of %s is unreadable: %r", self.message_id, exc)
            raise _RowUnknown from exc

    async def _delivered(self) -> int | None:
        """How many characters of the content this reader's client holds; None when nothing can tell."""
        if self.after_seq == 0:
            return self.sent_chars
        try:
            before = await self.log.text_through(self.message_id, self.after_seq)
        except (*STORE_ERRORS, OSError):
            return None
        return None if before is None else before + self.sent_chars

    async def _log_exists(self) -> bool | None:
        try:
            return await self.log.exists(self.message_id)
        except (*STORE_ERRORS, OSError):
            return None

    async def _interrupt_if_expired(self) -> None:
        runtime = get_runtime()
        try:
            await asyncio.wrap_future(
                runtime.submit(runtime.leases.interrupt_if_expired(self.workspace_id, self.message_id))
            )
        except (*STORE_ERRORS, OSError, *DATABASE_ERRORS) as exc:
            # The log holds the text the ending is rebuilt from: try again at the next check.
            logger.info("could not end %s as interrupted yet: %r", self.message_id, exc)

    async def events(self) -> AsyncIterator[list[dict]]:
        """The message's events after `after_seq`, in batches, up to `done` or `error`. An empty batch
        means nothing happened for a while: time for a keep-alive."""
        first = True  # the first look does not block: a finished message with no log answers at once
        while True:
            first_look, first = first, False
            wait = 0 if first_look else self._quiet_for()
            if self.gap:
                await asyncio.sleep(wait)
                events = []
            else:
                events = await _read(self.log, self.message_id, self.last_seq, wait)
                was_down, self.log_down = self.log_down, events is None
                if not self.log_down:
                    self.down_pause = DOWN_FIRST_PAUSE_SECONDS
                elif was_down:
                    # Still unreachable: look again (at the log, then the row) soon after the outage
                    # began, when the producer is likely to record its ending, then once a period.
                    await asyncio.sleep(min(wait, self.down_pause))
                    self.down_pause *= 2
            if events:
                batch = self._take(events)
                if batch:
                    yield batch
                    self.last_sent = time.monotonic()
                    if batch[-1]["type"] in TERMINAL_TYPES:
                        return
                if not self.gap:
                    continue
            if first_look and not self.gap and not self.log_down and self.log.expected_here(self.message_id):
                continue  # the first look, at a reply this process is starting: its events wake us
            try:
                state = await self._row()
            except _RowUnknown:
                state = _UNKNOWN
            if state is None:  # the thread was deleted under us
                yield [
                    make_event(
                        self.last_seq + 1, "error", message_id=self.message_id, thread_id="",
                        error={"code": "not_found", "message": "The message was deleted."},
                    )
                ]
                return
            if state is _UNKNOWN:
                pass  # neither store can tell now: keep the client waiting, and pinging
            elif state.status != "streaming":
                self.final_seen_at = self.final_seen_at or time.monotonic()
                # The log normally brings the ending within moments; the row finishes the stream when
                # the log lost events, cannot be reached, or (after a grace) never brings it.
                if (
                    self.gap or self.log_down or time.monotonic() - self.final_seen_at >= TERMINAL_GRACE_SECONDS
                    or await self._log_exists() is not True
                ):
                    yield fallback_events(state, self.message_id, self.last_seq, await self._delivered())
                    return
            elif state.lease_expired:
                await self._interrupt_if_expired()
                continue
            if self._ping_due():
                yield []
                self.last_sent = time.monotonic()


_UNKNOWN: Any = object()


async def follow_events(workspace_id: str, message_id: str, after_seq: int) -> AsyncIterator[list[dict]]:
    """A reply's events after `after_seq`, in batches, up to `done` or `error` (`ReplyReader.events`)."""
    async for batch in ReplyReader(workspace_id, message_id, after_seq).events():
        yield batch


async def follow(workspace_id: str, message_id: str, after_seq: int) -> AsyncIterator[bytes]:
    """`follow_events` as Server-Sent Events: each batch is one body chunk (one write, however many
    events), each quiet spell a `: ping` comment."""
    # The request's handler (tenex.handler) has given the view's database connection back already.
    yield RETRY_HINT
    async for batch in follow_events(workspace_id, message_id, after_seq):
        yield b"".join(map(encode_sse, batch)) if batch else PING


def sse_response(workspace_id: str, message_id: str, after_seq: int) -> StreamingHttpResponse:
    response = StreamingHttpResponse(follow(workspace_id, message_id, after_seq), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
