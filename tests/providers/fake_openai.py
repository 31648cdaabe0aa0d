"""OpenAI Chat Completions streaming, on the wire: `data: {chat.completion.chunk}` lines, `data: [DONE]`."""

from __future__ import annotations

import json
from typing import Any

PATH = "/v1/chat/completions"
MODEL = "test-model"
DONE = b"data: [DONE]\n\n"
MALFORMED = b'data: {"id": "chatcmpl-test", "choices": [\n\n'


def sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def chunk(delta: dict[str, Any] | None = None, *, finish_reason: str | None = None) -> bytes:
    """One chat.completion.chunk with a single choice."""
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
    return sse(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "system_fingerprint": "fp_test",
            "choices": [choice],
        }
    )


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> bytes:
    """The last chunk with stream_options.include_usage: no choices, only usage."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return sse(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [],
            "usage": usage,
        }
    )


def text_chunks(parts: list[str]) -> list[bytes]:
    """The opening role delta, then one content delta per part."""
    return [chunk({"role": "assistant", "content": ""})] + [chunk({"content": part}) for part in parts]


def text_reply(parts: list[str], *, prompt_tokens: int = 11, completion_tokens: int = 7) -> list[bytes]:
    return [
        *text_chunks(parts),
        chunk(finish_reason="stop"),
        usage_chunk(prompt_tokens, completion_tokens),
        DONE,
    ]


def tool_call_delta(
    index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> bytes:
    """A delta carrying one fragment of the tool call at `index`; id and name come with the first."""
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        fragment.update(id=call_id, type="function")
        fragment["function"]["name"] = name
    return chunk({"tool_calls": [fragment]})


def partial_text(parts: list[str]) -> list[bytes]:
    """Text deltas of a reply that never finishes."""
    return text_chunks(parts)


def error_body(error_type: str, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def error_chunk(error_type: str, message: str, code: str | None = None) -> bytes:
    """What an OpenAI-compatible server sends when it fails after the stream started."""
    return sse(error_body(error_type, message, code))


def api_key_of(headers: dict[str, str]) -> str:
    return headers.get("authorization", "").removeprefix("Bearer ")
