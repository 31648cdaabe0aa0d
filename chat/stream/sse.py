"""Reading a message's stream as Server-Sent Events. Readers only read the log; they never produce.

A reader replays what the log holds after `Last-Event-ID`, then follows it live. While idle it sends
`: ping` comments and checks the message row: a lapsed producer lease is ended as `interrupted`
(by this process, on the runtime loop), and a finished message whose log has expired is replayed
from the stored message. Every stream ends with `done` or `error`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import redis
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.http import StreamingHttpResponse

from chat.stream import records
from chat.stream.events import PING, RETRY_HINT, encode_sse, make_event
from chat.stream.log import TERMINAL_TYPES, get_stream_log
from chat.stream.runtime import get_runtime

# How long a finished message may lack its terminal event in the log before we answer from the row.
TERMINAL_GRACE_SECONDS = 3.0
READ_RETRY_SECONDS = 10.0

logger = logging.getLogger(__name__)

# A few threads of their own (counted in the database pool's size): a stream is served from the
# event loop and owns no thread; only its occasional look at the message row needs one.
_message_state = DatabaseSyncToAsync(
    records.message_state, thread_sensitive=False,
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


async def _read(log, message_id: str, after_seq: int, wait: float) -> list[dict]:
    """`log.read`, riding out a Redis hiccup of up to READ_RETRY_SECONDS; past that the error ends the
    response without a terminal event, which a client treats as a dropped connection and resumes."""
    delay = 0.1
    deadline = time.monotonic() + READ_RETRY_SECONDS
    while True:
        try:
            return await log.read(message_id, after_seq, block_seconds=wait)
        except (redis.RedisError, OSError):
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("reading the stream of %s failed; retrying", message_id, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            wait = 0


async def follow_events(workspace_id: str, message_id: str, after_seq: int) -> AsyncIterator[list[dict]]:
    """The message's events after `after_seq`, in batches as the log hands them out, up to `done` or
    `error`. An empty batch means nothing happened for a while: time for a keep-alive."""
    log = get_stream_log()
    ping_every = settings.TENEX_STREAM_PING_SECONDS
    check_every = max(1.0, settings.TENEX_STREAM_LEASE_SECONDS / 2)
    last_seq = after_seq
    sent_chars = 0  # the text of the deltas this reader has handed out
    last_sent = time.monotonic()
    final_seen_at: float | None = None
    # The log skipped events (Redis lost them: restarted empty, failed over, trimmed): nothing after
    # the gap is sent, the stored message finishes the stream once it has ended.
    gap = False
    first = True  # the first look does not block: a finished message with no log answers at once
    while True:
        first_look, first = first, False
        wait = 0 if first_look else max(0.05, min(check_every, ping_every - (time.monotonic() - last_sent)))
        if gap:
            await asyncio.sleep(wait)
            events = []
        else:
            events = await _read(log, message_id, last_seq, wait)
        if events:
            batch = []
            for event in events:
                if event["seq"] <= last_seq:
                    continue
                if event["seq"] != last_seq + 1:
                    gap = True
                    break
                batch.append(event)
                last_seq = event["seq"]
                if event["type"] == "delta":
                    sent_chars += len(event["delta"])
                if event["type"] in TERMINAL_TYPES:
                    break
            if batch:
                yield batch
                last_sent = time.monotonic()
                if batch[-1]["type"] in TERMINAL_TYPES:
                    return
            if not gap:
                continue
        if first_look and not gap and log.expected_here(message_id):
            continue  # the first look, at a reply this process is starting: its events wake us
        state = await _message_state(workspace_id, message_id)
        if state is None:  # the thread was deleted under us
            yield [
                make_event(
                    last_seq + 1, "error", message_id=message_id, thread_id="",
                    error={"code": "not_found", "message": "The message was deleted."},
                )
            ]
            return
        if state.status != "streaming":
            final_seen_at = final_seen_at or time.monotonic()
            if gap or time.monotonic() - final_seen_at >= TERMINAL_GRACE_SECONDS or not await log.exists(message_id):
                # What the reader holds: this connection's deltas, after the ones before `after_seq`.
                before = 0 if after_seq == 0 else await log.text_through(message_id, after_seq)
                yield fallback_events(state, message_id, last_seq, None if before is None else before + sent_chars)
                return
        elif state.lease_expired:
            runtime = get_runtime()
            await asyncio.wrap_future(runtime.submit(runtime.interrupt_if_expired(workspace_id, message_id)))
            continue
        if time.monotonic() - last_sent >= ping_every - 0.05:
            yield []
            last_sent = time.monotonic()


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
