"""Cross-process control signals for generations (filled in by the stream runtime)."""

from __future__ import annotations


def request_cancel(message_id: str) -> None:
    from chat.stream.runtime import get_runtime

    get_runtime().request_cancel(message_id)
