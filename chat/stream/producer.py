"""The `Producer`: runs each reply on the runtime loop, from its input to its recorded ending.

It runs the assistant, publishes each delta and tool call through the process's `EventFlusher`
(state first, then the log: content is always exactly the joined deltas), and records the outcome
in one transaction before publishing the final `done` or `error` event. Meanwhile the
`LeaseKeeper` checkpoints the reply and the `CancelBus` may stop it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Any

from django.conf import settings

from agents.providers import get_provider
from agents.providers.base import ProviderError, TextDelta, Usage
from agents.runtime import ToolCallUpdate, run_assistant
from chat.prompt import GenerationInput
from chat.stream import records
from chat.stream.cancel import CancelBus
from chat.stream.endings import DATABASE_UNAVAILABLE_ERROR, OutageOutlasted, record_when_back, retry_through_outage
from chat.stream.flusher import EventFlusher
from chat.stream.generation import Generation, GenerationStatus
from chat.stream.leases import INTERRUPTED_ERROR, LeaseKeeper
from chat.stream.log import StreamLog

logger = logging.getLogger(__name__)

STREAM_UNAVAILABLE_ERROR = {
    "code": "stream_unavailable",
    "message": "The stream store stopped accepting the reply; it ended with the text written so far.",
}
INTERNAL_ERROR = {"code": "internal_error", "message": "The assistant failed unexpectedly."}


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


class Producer:
    """Runs replies on the runtime loop, each from its input to its recorded and published ending."""

    def __init__(
        self, *, producer_id: str, log: StreamLog, flusher: EventFlusher, leases: LeaseKeeper, cancels: CancelBus,
        active: dict[str, Generation], db: Callable[..., Awaitable[Any]],
        spawn: Callable[[Awaitable[Any]], asyncio.Task],
    ) -> None:
        self.producer_id = producer_id
        self.log = log
        self.flusher = flusher
        self.leases = leases
        self.cancels = cancels
        self.active = active
        self.db = db
        self.spawn = spawn

    async def generate(self, workspace_id: str, message_id: str, loaded: GenerationInput) -> None:
        generation = Generation(
            workspace_id=workspace_id, message_id=message_id, thread_id=loaded.thread_id, created_at=loaded.created_at
        )
        self.active[message_id] = generation  # from now on the lease keeper saves it and renews its lease
        try:
            if self.cancels.cancel_was_requested(message_id):
                generation.cancel()
            try:
                status, error = await self.produce(generation, loaded)
            finally:
                reason = generation.produced()
            if reason is GenerationStatus.LOG_FAILED:
                # The log stopped taking events: the reply ends with what it has, every word of it
                # in the database, from where readers finish their streams.
                logger.error("the stream log refused the events of %s: %r", message_id, generation.publish_error)
                status, error = "failed", STREAM_UNAVAILABLE_ERROR
            elif reason is GenerationStatus.STOPPING:
                status, error = "interrupted", INTERRUPTED_ERROR
            if not generation.lost:
                await self.finish(generation, status, error)
        except Exception:  # noqa: BLE001 - never leave a message streaming because of a bug here
            logger.exception("generation of %s failed", message_id)
            if not generation.lost:
                with suppress(Exception):
                    await self.finish(generation, "failed", INTERNAL_ERROR)
        finally:
            self.active.pop(message_id, None)
            if generation.state.seq == 0:
                self.log.abandon(message_id)  # nothing produced here: readers look in Redis
            if generation.status is not GenerationStatus.RECORDED_LATER:
                self.leases.lease_ended(workspace_id, message_id)

    async def produce(self, generation: Generation, loaded: GenerationInput) -> tuple[str, dict | None]:
        """Run the assistant until it ends or the generation is stopped (which cancels the provider call)."""
        consuming = generation.consuming = asyncio.ensure_future(self.consume(generation, loaded))
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

    async def consume(self, generation: Generation, loaded: GenerationInput) -> tuple[str, dict | None]:
        state = generation.state
        publish = self.flusher.publish
        events = run_assistant(loaded.request, get_provider())
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    text = utf8_safe(event.text)
                    # State first, then the log: content is always exactly the joined deltas.
                    state.content += text
                    state.version += 1
                    publish(generation, "delta", delta=text)
                elif isinstance(event, ToolCallUpdate):
                    state.record_tool_call(event.envelope)
                    publish(generation, "tool_call", tool_call=event.envelope)
                elif isinstance(event, Usage):
                    state.usage = {"input_tokens": event.input_tokens, "output_tokens": event.output_tokens}
        except ProviderError as exc:
            return "failed", {"code": exc.code, "message": exc.message}
        finally:
            with suppress(BaseException):
                await events.aclose()
        return "complete", None

    async def finish(self, generation: Generation, status: str, error: dict | None) -> None:
        """Record the outcome (through a database outage, within its bound), then publish the ending."""
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
            generation.status = GenerationStatus.RECORDED_LATER
            self.spawn(record_when_back(
                self.db, record, status, error, known,
                keep_lease=partial(self.leases.track_leases, [reply]),
                forget_lease=partial(self.leases.untrack_lease, *reply),
            ))
        if message is None:
            return  # another process ended it (our lease lapsed); its ending stands
        if error is None:
            self.flusher.publish(generation, "done", message=message)
        else:
            self.flusher.publish(generation, "error", message=message, error=error)
        try:
            await self.flusher.drain(generation)
        except Exception as exc:  # noqa: BLE001 - the log is unreachable; the ending is in the database
            logger.warning("the ending of %s is not in its log (%r); readers take it from the database",
                           generation.message_id, exc)
        await self.log.finish(generation.message_id)
