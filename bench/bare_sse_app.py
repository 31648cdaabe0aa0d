"""The floor for bench/stream.py: a bare ASGI app that streams one captured tenex reply from memory.

Serve it with the same daphne as tenex (`python -m daphne ... bench.bare_sse_app:application`).
Any POST is answered with the exact bytes and headers of a reply captured from tenex, read once at
import from the JSON file named by BENCH_SSE_CAPTURE ({"headers": [[name, value], ...],
"chunks": ["<latin-1 text>", ...]}): one ASGI body message per SSE block, `more_body=True`, as
Django's ASGI handler sends them. BENCH_BARE_DELAY_MS pauses between the blocks after the first
delta (0: as fast as possible; the RSS measurement uses a long pause so streams stay open, as
tenex's TENEX_LOCAL_TOKEN_DELAY_MS does). GET /healthz answers 200.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _load() -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    path = os.environ.get("BENCH_SSE_CAPTURE")
    if not path:
        raise RuntimeError("BENCH_SSE_CAPTURE must name the capture file written by bench/stream.py")
    with open(path, encoding="utf-8") as handle:
        capture = json.load(handle)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in capture["headers"]]
    chunks = [chunk.encode("latin-1") for chunk in capture["chunks"]]
    return headers, chunks


HEADERS, CHUNKS = _load()
DELAY = int(os.environ.get("BENCH_BARE_DELAY_MS", "0")) / 1000
FIRST_DELTA = next((i for i, chunk in enumerate(CHUNKS) if b"\nevent: delta\n" in chunk), 0)


async def _drain_request(receive: Receive) -> bool:
    """Read the whole request body; False when the client went away first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body"):
            return True


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if not await _drain_request(receive):
        return
    if scope["method"] != "POST":
        body = b"ok" if scope["path"] == "/healthz" else b"POST for the stream"
        await send({"type": "http.response.start", "status": 200 if scope["path"] == "/healthz" else 405,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    if not DELAY:
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    # Slow mode holds streams open for minutes: stop when the client leaves, as Django's handler does.
    gone = asyncio.Event()

    async def watch() -> None:
        if (await receive())["type"] == "http.disconnect":
            gone.set()

    watcher = asyncio.create_task(watch())
    try:
        for index, chunk in enumerate(CHUNKS):
            if index > FIRST_DELTA:  # like tenex's token delay: nothing waits before the first delta
                try:
                    await asyncio.wait_for(gone.wait(), DELAY)
                    return
                except TimeoutError:
                    pass
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
