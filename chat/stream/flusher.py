"""Writing the events every reply publishes to the stream log, batched across replies.

Group commit: while one round of appends is on its way to the log, the events every reply produces
meanwhile wait and go together in the next round (one script call for all replies), so a fast
provider costs one round trip per batch, not per token, and a slow one still sends each token the
moment it exists. A round's answer per reply may stop it: the log refused the events (unreachable),
another process ended the message (its first seq was taken), or a cancel of it was asked for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from chat.stream.events import make_event
from chat.stream.generation import Generation
from chat.stream.log import CANCEL_REQUESTED, StreamLog


class EventFlusher:
    """The process's one writer of reply events: `publish` queues, one task writes the queues."""

    def __init__(self, log: StreamLog) -> None:
        self.log = log
        # Generations with events to write, in the order they published, and the one task writing them.
        self._unflushed: dict[str, Generation] = {}
        self._in_flight: set[str] = set()  # message ids whose batch is on its way to the log
        self._flusher: asyncio.Future | None = None

    def publish(self, generation: Generation, kind: str, **payload: Any) -> None:
        """Number the event and queue it for the log (on the runtime loop)."""
        state = generation.state
        state.seq += 1
        generation.pending.append(
            make_event(state.seq, kind, message_id=generation.message_id, thread_id=generation.thread_id, **payload)
        )
        self.schedule_flush(generation)

    def schedule_flush(self, generation: Generation) -> None:
        self._unflushed[generation.message_id] = generation
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        while self._unflushed:
            generations = [g for g in self._unflushed.values() if g.pending and not g.lost and g.publish_error is None]
            self._unflushed.clear()
            if not generations:
                continue
            batches = []
            for generation in generations:
                batch, generation.pending = generation.pending, []
                self._in_flight.add(generation.message_id)
                batches.append((generation.message_id, batch))
            try:
                results = await self.log.append_many(batches)
            except Exception as exc:  # noqa: BLE001 - the log is unreachable: every batch failed
                results = [exc] * len(batches)
            for generation, (message_id, batch), result in zip(generations, batches, results, strict=True):
                self._in_flight.discard(message_id)
                if isinstance(result, Exception):
                    generation.pending[:0] = batch  # kept, in order, for `drain` to retry
                    generation.log_failed(result)  # stop producing what could not be delivered
                elif not result:
                    generation.lose()  # another process ended this message: its ending stands
                elif result == CANCEL_REQUESTED:
                    generation.cancel()  # idempotent: the ending's own append may answer this too

    async def drain(self, generation: Generation) -> None:
        """Wait until every event the generation published is in the log, retrying once after a
        failed round; raise what stopped the log taking them."""
        if generation.publish_error is not None and generation.pending:
            generation.publish_error = None
            self.schedule_flush(generation)
        while (
            (generation.pending or generation.message_id in self._in_flight)
            and generation.publish_error is None and not generation.lost
        ):
            if self._flusher is None or self._flusher.done():
                self.schedule_flush(generation)
            await asyncio.shield(self._flusher)
        if generation.publish_error is not None:
            raise generation.publish_error
