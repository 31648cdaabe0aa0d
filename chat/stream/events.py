"""Stream event shapes and their Server-Sent Events encoding.

An event is a plain mapping to its readers (the SSE view, the MCP tools), but it keeps its JSON text
once encoded: the producer encodes each event once, the Redis log stores that text, and every SSE
reader of the event (in this process or, decoded from Redis, in another) sends the same text.
"""

from __future__ import annotations

import json
from typing import Any, Literal

EventType = Literal["delta", "tool_call", "done", "error"]

# The contract's own spelling of an event (API.md, "The stream"): `{"seq": 7, "type": "delta", ...}`.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
_encode_string = json.encoder.encode_basestring  # a JSON string literal, as _ENCODER writes one


class Event(dict):
    """One stream event. Not to be changed after it is encoded (`text()` would go stale)."""

    __slots__ = ("_text",)

    def __init__(self, fields: dict[str, Any], text: str | None = None):
        super().__init__(fields)
        self._text = text

    @classmethod
    def decode(cls, text: str | bytes) -> Event:
        """An event read back from its JSON text (the log's stored form), keeping that text."""
        if isinstance(text, bytes):
            text = text.decode()
        return cls(json.loads(text), text)

    @classmethod
    def from_entry(cls, fields: dict) -> Event:
        """The event a Redis log entry holds (its `e` field: the JSON text)."""
        return cls.decode(fields.get(b"e") or fields.get("e"))

    def text(self) -> str:
        if self._text is None:
            self._text = _delta_text(self) if self.get("type") == "delta" else _ENCODER.encode(self)
        return self._text

    def __reduce__(self):  # copies and pickles are plain events with the same text
        return (Event, (dict(self), self._text))


_DELTA_KEYS = ("seq", "type", "message_id", "thread_id", "delta", "tool_call")


def _delta_text(event: dict[str, Any]) -> str:
    """A delta's text, the same characters `_ENCODER` would write, without its per-object walk:
    deltas are nearly every event, and only their `delta` string needs escaping."""
    if (
        tuple(event) != _DELTA_KEYS or event["tool_call"] is not None or type(event["seq"]) is not int
        or not all(type(event[key]) is str for key in ("message_id", "thread_id", "delta"))
    ):
        return _ENCODER.encode(event)
    return (
        f'{{"seq": {event["seq"]}, "type": "delta", "message_id": {_encode_string(event["message_id"])}, '
        f'"thread_id": {_encode_string(event["thread_id"])}, "delta": {_encode_string(event["delta"])}, '
        f'"tool_call": null}}'
    )


def make_event(
    seq: int, kind: EventType, *, message_id: str, thread_id: str, delta: str | None = None,
    tool_call: dict | None = None, message: dict | None = None, error: dict | None = None,
) -> Event:
    fields: dict[str, Any] = {
        "seq": seq, "type": kind, "message_id": message_id, "thread_id": thread_id,
        "delta": delta, "tool_call": tool_call,
    }
    if message is not None:
        fields["message"] = message
    if error is not None:
        fields["error"] = error
    return Event(fields)


def event_text(event: dict[str, Any]) -> str:
    """The event's JSON text: encoded once for an `Event`, on demand for any other mapping."""
    if isinstance(event, Event):
        return event.text()
    return _ENCODER.encode(event)


def encode_sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {event_text(event)}\n\n".encode()


PING = b": ping\n\n"
RETRY_HINT = b"retry: 2000\n\n"
