"""Anthropic Messages streaming, on the wire: named SSE events from message_start to message_stop."""

from __future__ import annotations

import json
from typing import Any

PATH = "/v1/messages"
MODEL = "claude-test"


def event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()


def message_start(input_tokens: int = 25, cache_read_input_tokens: int = 0) -> bytes:
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cache_read_input_tokens,
        "output_tokens": 1,
    }
    message = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return event("message_start", {"message": message})


PING = event("ping", {})
MALFORMED = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {\n\n'
MESSAGE_STOP = event("message_stop", {})


def content_block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[bytes]:
    """content_block_start, one content_block_delta per delta, content_block_stop."""
    return [
        event("content_block_start", {"index": index, "content_block": block}),
        *(event("content_block_delta", {"index": index, "delta": delta}) for delta in deltas),
        event("content_block_stop", {"index": index}),
    ]


def text_block(index: int, parts: list[str]) -> list[bytes]:
    """A text block streamed as one text_delta per part."""
    deltas = [{"type": "text_delta", "text": part} for part in parts]
    return content_block(index, {"type": "text", "text": ""}, deltas)


def tool_use_block(index: int, tool_use_id: str, name: str, fragments: list[str]) -> list[bytes]:
    """A tool_use block whose input arrives as input_json_delta fragments."""
    block = {"type": "tool_use", "id": tool_use_id, "name": name, "input": {}}
    deltas = [{"type": "input_json_delta", "partial_json": fragment} for fragment in fragments]
    return content_block(index, block, deltas)


def message_delta(stop_reason: str, output_tokens: int) -> bytes:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return event("message_delta", {"delta": delta, "usage": {"output_tokens": output_tokens}})


def text_reply(parts: list[str], *, input_tokens: int = 25, output_tokens: int = 9) -> list[bytes]:
    return [
        message_start(input_tokens),
        PING,
        *text_block(0, parts),
        message_delta("end_turn", output_tokens),
        MESSAGE_STOP,
    ]


def partial_text(parts: list[str]) -> list[bytes]:
    """A reply whose text block never stops."""
    return [message_start(), *text_block(0, parts)[:-1]]


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def api_key_of(headers: dict[str, str]) -> str:
    """The key as the SDK sent it: `x-api-key`, or `authorization: Bearer` (what anthropic 2.x does)."""
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


def error_event(error_type: str, message: str) -> bytes:
    """The `event: error` the API sends when it fails after the stream started (e.g. overloaded)."""
    return f"event: error\ndata: {json.dumps(error_body(error_type, message))}\n\n".encode()
