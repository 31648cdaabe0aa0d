"""The provider relay floor for bench/stream.py's provider mode: a bare ASGI app that reads the
provider's stream with a lean client and forwards each text delta as SSE, and nothing else.

Serve it with the same daphne as tenex (`python -m daphne ... bench.provider_relay_app:application`).
Any POST with `{"content": ...}` opens a streaming request to BENCH_PROVIDER_URL (bench/wire_provider.py)
in BENCH_PROVIDER_KIND's wire format (`openai`: Chat Completions, `anthropic`: Messages), without
tools, over a keep-alive HTTP/1.1 connection of a small per-process pool (asyncio streams, chunked
decoding), and writes every text delta as tenex writes one (`id`/`event: delta`/`data` with the
contract's event fields), one ASGI body message per network read, then a `done` event carrying the
text. Response headers come from the capture file (BENCH_SSE_CAPTURE). GET /healthz answers 200.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import urlsplit

from bench.asgi_floor import Receive, Send, answer, capture_headers, lifespan, load_capture, new_id, read_body

ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
RETRY_HINT = b"retry: 2000\n\n"


HEADERS = capture_headers(load_capture())
KIND = os.environ.get("BENCH_PROVIDER_KIND", "openai")
_URL = urlsplit(os.environ.get("BENCH_PROVIDER_URL", "http://127.0.0.1:8765"))
HOST, PORT = _URL.hostname or "127.0.0.1", _URL.port or 80
PATH = "/v1/chat/completions" if KIND == "openai" else "/v1/messages"
_idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []


def request_bytes(question: str) -> bytes:
    if KIND == "openai":
        payload = {"model": "bench-model", "messages": [{"role": "user", "content": question}], "stream": True,
                   "stream_options": {"include_usage": True}, "max_tokens": 1024}
        auth = "Authorization: Bearer bench-provider-key"
    else:
        payload = {"model": "bench-model", "messages": [{"role": "user", "content": question}], "stream": True,
                   "max_tokens": 1024}
        auth = "x-api-key: bench-provider-key\r\nanthropic-version: 2023-06-01"
    body = json.dumps(payload).encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\n{auth}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def deltas_of(block: bytes) -> str | None:
    """The text a provider's SSE block carries, if any."""
    data = block[block.find(b"data: ") + 6:] if b"data: " in block else b""
    if not data or data.startswith(b"[DONE]"):
        return None
    payload = json.loads(data)
    if KIND == "openai":
        choices = payload.get("choices") or ()
        return (choices[0].get("delta") or {}).get("content") or None if choices else None
    if payload.get("type") == "content_block_delta":
        return payload["delta"].get("text") or None
    return None


async def relay(send: Send, question: str) -> None:
    reader, writer = _idle.pop() if _idle else await asyncio.open_connection(HOST, PORT)
    writer.write(request_bytes(question))
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"provider answered {head[:80]!r}")
    message_id, thread_id = new_id("msg"), new_id("thr")
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": RETRY_HINT, "more_body": True})
    seq = 0
    text: list[str] = []
    pending = b""
    buffer = bytearray()
    finished = False
    while not finished:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("the provider closed the stream")
        buffer += data
        body = bytearray()
        while True:  # every complete chunk in the buffer
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(buffer[:line_end], 16)
            if size == 0:
                if len(buffer) < line_end + 4:
                    break
                del buffer[: line_end + 4]
                finished = True
                break
            if len(buffer) < line_end + 2 + size + 2:
                break
            pending += bytes(buffer[line_end + 2: line_end + 2 + size])
            del buffer[: line_end + 2 + size + 2]
        *blocks, pending = pending.split(b"\n\n")
        for block in blocks:
            delta = deltas_of(block)
            if delta is not None:
                seq += 1
                text.append(delta)
                event = (f'{{"seq": {seq}, "type": "delta", "message_id": "{message_id}", "thread_id": "{thread_id}", '
                         f'"delta": {ENCODER.encode(delta)}, "tool_call": null}}')
                body += f"id: {seq}\nevent: delta\ndata: {event}\n\n".encode()
        if body:
            await send({"type": "http.response.body", "body": bytes(body), "more_body": True})
    _idle.append((reader, writer))
    seq += 1
    done = ENCODER.encode({"seq": seq, "type": "done", "message_id": message_id, "thread_id": thread_id,
                           "delta": None, "tool_call": None,
                           "message": {"id": message_id, "content": "".join(text), "status": "complete"}})
    await send({"type": "http.response.body", "body": f"id: {seq}\nevent: done\ndata: {done}\n\n".encode(),
                "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http" or (body := await read_body(receive)) is None:
        return
    if scope["method"] != "POST":
        ok = scope["path"] == "/healthz"
        await answer(send, 200 if ok else 405, b"ok" if ok else b"POST for the stream")
        return
    try:
        question = json.loads(body)["content"]
    except (ValueError, KeyError, TypeError):
        question = "What is the Aurora launch plan?"
    await relay(send, question)
