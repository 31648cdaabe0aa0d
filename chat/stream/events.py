"""Stream event shapes and their Server-Sent Events encoding."""

from __future__ import annotations

import json
from typing import Any, Literal, TypedDict

EventType = Literal["delta", "tool_call", "done", "error"]


class StreamEvent(TypedDict, total=False):
    seq: int
    type: EventType
    message_id: str
    thread_id: str
    delta: str | None
    tool_call: dict | None
    message: dict
    error: dict


def make_event(
    seq: int, kind: EventType, *, message_id: str, thread_id: str, delta: str | None = None,
    tool_call: dict | None = None, message: dict | None = None, error: dict | None = None,
) -> StreamEvent:
    event: StreamEvent = {
        "seq": seq, "type": kind, "message_id": message_id, "thread_id": thread_id,
        "delta": delta, "tool_call": tool_call,
    }
    if message is not None:
        event["message"] = message
    if error is not None:
        event["error"] = error
    return event


def encode_sse(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(", ", ": "))
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n".encode()


PING = b": ping\n\n"
RETRY_HINT = b"retry: 2000\n\n"
