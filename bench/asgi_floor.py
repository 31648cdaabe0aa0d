"""What the floor apps of bench/stream.py share: the ASGI lifespan, reading a request, the capture's
headers, ids shaped like tenex's."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def load_capture() -> dict:
    """The reply captured from tenex by bench/stream.py: {"headers": [[name, value], ...], "chunks": [...]}."""
    path = os.environ.get("BENCH_SSE_CAPTURE")
    if not path:
        raise RuntimeError("BENCH_SSE_CAPTURE must name the capture file written by bench/stream.py")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def capture_headers(capture: dict) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in capture["headers"]]


def new_id(prefix: str) -> str:
    """An id of tenex's shape and length (prefix, underscore, 22 base62 characters)."""
    return f"{prefix}_{''.join(secrets.choice(ALPHABET) for _ in range(22))}"


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
