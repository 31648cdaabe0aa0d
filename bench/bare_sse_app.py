"""The floor for bench/stream.py: a bare ASGI app that streams one captured tenex reply from memory.

Serve it with the same daphne as tenex (`python -m daphne ... bench.bare_sse_app:application`).
Any POST is answered with the exact bytes and headers of a reply captured from tenex, read once at
import from the JSON file named by BENCH_SSE_CAPTURE ({"headers": [[name, value], ...],
"chunks": ["<latin-1 text>", ...]}): one ASGI body message per SSE block, `more_body=True`, as
Django's ASGI handler sends them. BENCH_BARE_DELAY_MS paces it: one block per delay after the
first delta, as tenex's local provider (TENEX_LOCAL_TOKEN_DELAY_MS) and a model's stream give one
word per delay (0: as fast as possible). The paced mode of bench/stream.py uses 20 ms (50 words/s,
the relay floor); the RSS measurement a long pause so streams stay open. GET /healthz answers 200.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench.asgi_floor import Receive, Send, answer, capture_headers, lifespan, load_capture, read_body

_CAPTURE = load_capture()
HEADERS = capture_headers(_CAPTURE)
CHUNKS = [chunk.encode("latin-1") for chunk in _CAPTURE["chunks"]]
DELAY = int(os.environ.get("BENCH_BARE_DELAY_MS", "0")) / 1000
FIRST_DELTA = next((i for i, chunk in enumerate(CHUNKS) if b"\nevent: delta\n" in chunk), 0)


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http" or await read_body(receive) is None:
        return
    if scope["method"] != "POST":
        ok = scope["path"] == "/healthz"
        await answer(send, 200 if ok else 405, b"ok" if ok else b"POST for the stream")
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    if not DELAY:
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    # Paced: one event per DELAY after the first delta, as tenex's local provider sleeps between
    # words (the sleep is not shortened by the time a write took, as the provider's is not). A
    # stream held open for minutes (the RSS measurement) stops when the client leaves.
    gone = False

    async def watch() -> None:
        nonlocal gone
        if (await receive())["type"] == "http.disconnect":
            gone = True

    watcher = asyncio.create_task(watch())
    try:
        for index, chunk in enumerate(CHUNKS):
            if index > FIRST_DELTA:  # like tenex's token delay: nothing waits before the first delta
                await asyncio.sleep(DELAY)
                if gone:
                    return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
