"""One reply being produced in this process: its state, and where it stands (`GenerationStatus`).

The `Producer` (producer.py) runs it, the `EventFlusher` writes its events, the `LeaseKeeper`
checkpoints it and may find it lost, the `CancelBus` may stop it: each changes its status only
through the methods below, so a reason to stop never hides a weightier one.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from datetime import datetime

from chat.stream import records


class GenerationStatus(enum.IntEnum):
    """Where a reply stands in the process producing it.

    While it is produced, a reason to stop replaces a lesser one (in this order): a reply cancelled
    and then lost is lost. Once produced, only LOST can still replace FINISHING.
    """

    PRODUCING = 0  # the assistant runs; the lease keeper checkpoints it and renews its lease
    CANCELLED = 1  # a cancel arrived: produce no more (ends `cancelled`)
    STOPPING = 2  # the process exits and could not wait for it (ends `interrupted`)
    LOG_FAILED = 3  # the stream log refused its events (ends `failed`, stream_unavailable)
    LOST = 4  # another process ended it (our lease had lapsed): its ending stands, nothing more is written
    FINISHING = 5  # produced: its ending is being recorded and published
    RECORDED_LATER = 6  # ended in the log; its row waits for PostgreSQL (endings.record_when_back)


@dataclass
class Generation:
    workspace_id: str
    message_id: str
    thread_id: str = ""
    created_at: datetime | None = None  # the reply's: its ending is recorded without reading it back
    status: GenerationStatus = GenerationStatus.PRODUCING
    state: records.GenerationState = field(default_factory=records.GenerationState)
    consuming: asyncio.Task | None = None  # the provider loop, while it runs
    # Events published but not yet in the log, in seq order (written by the EventFlusher).
    pending: list[dict] = field(default_factory=list)
    publish_error: Exception | None = None  # why the log refused the last round, until retried
    # Checkpoint bookkeeping, kept by the LeaseKeeper.
    saved_version: int = -1
    renewed_at: float = field(default_factory=time.monotonic)

    @property
    def claimed(self) -> bool:
        """Being produced here: the lease keeper saves its partial content and renews its lease."""
        return self.status < GenerationStatus.LOST

    @property
    def stopped(self) -> bool:
        """Produce no more (cancelled, stopping, refused by the log, or lost)."""
        return self.status is not GenerationStatus.PRODUCING

    @property
    def lost(self) -> bool:
        return self.status is GenerationStatus.LOST

    def _stop(self, reason: GenerationStatus) -> None:
        if self.claimed and reason > self.status:
            self.status = reason
        elif reason is GenerationStatus.LOST and self.status is GenerationStatus.FINISHING:
            self.status = reason
        if self.consuming is not None and not self.consuming.done():
            self.consuming.cancel()  # the provider call stops at its next await

    def cancel(self) -> None:
        """Stop producing: a cancel was asked for. Safe to call again, and after the reply ended."""
        self._stop(GenerationStatus.CANCELLED)

    def stop_for_exit(self) -> None:
        """Stop producing: the process is exiting (the reply ends `interrupted` now)."""
        self._stop(GenerationStatus.STOPPING)

    def log_failed(self, error: Exception) -> None:
        """The log refused a round of this reply's events: stop producing what cannot be delivered."""
        self.publish_error = error
        self._stop(GenerationStatus.LOG_FAILED)

    def lose(self) -> None:
        """Another process ended this reply (our lease had lapsed): stop, and write nothing more."""
        self._stop(GenerationStatus.LOST)

    def produced(self) -> GenerationStatus:
        """The assistant has stopped: from now on the reply is finishing (unless lost). Returns why
        it stopped (PRODUCING when it ran to its end)."""
        reason = self.status
        if self.claimed:
            self.status = GenerationStatus.FINISHING
        return reason
