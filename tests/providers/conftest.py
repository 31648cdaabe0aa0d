"""A scripted HTTP/1.1 server on 127.0.0.1 that replays vendor SSE streams and records requests."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

import pytest

from agents.providers.base import (
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
)

Step = bytes | float  # a chunk of the body to send, or seconds to wait
Ending = Literal["finish", "abort", "hold"]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes | None = None  # a whole body; otherwise a chunked stream of `steps`
    steps: list[Step] = field(default_factory=list)
    ending: Ending = "finish"


class ScriptedServer:
    """Answers each request with the next reply queued for its path (404 when none is queued).

    Stream endings: "finish" ends the chunked body properly, "abort" drops the connection mid-body,
    "hold" keeps the body open until the client disconnects, which sets `disconnected`.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.connections_opened = 0
        self.disconnected = threading.Event()
        self._replies: dict[str, list[_Reply]] = {}
        self._connections: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        start = asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def reply_stream(self, path: str, steps: list[Step], *, ending: Ending = "finish") -> None:
        headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
        self._replies.setdefault(path, []).append(_Reply(200, headers, steps=steps, ending=ending))

    def reply_json(self, path: str, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        reply = _Reply(status, {"content-type": "application/json", **(headers or {})}, json.dumps(payload).encode())
        self._replies.setdefault(path, []).append(reply)

    def bodies(self, path: str) -> list[Any]:
        return [request.body for request in self.requests if request.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        self.connections_opened += 1
        try:
            while await self._answer_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or stop() ended the connection
        finally:
            self._connections.discard(task)
            writer.close()

    async def _answer_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and write its reply; False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").strip().split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(RecordedRequest(method, path, headers, json.loads(raw) if raw else None))
        queued = self._replies.get(path)
        if not queued:
            error = {"error": {"type": "not_found_error", "message": f"nothing scripted for {path}"}}
            reply = _Reply(404, {"content-type": "application/json"}, json.dumps(error).encode())
        else:
            reply = queued.pop(0)
        return await self._write(reply, reader, writer)

    async def _write(self, reply: _Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        phrase = HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else "Error"
        status_line = f"HTTP/1.1 {reply.status} {phrase}\r\n"
        headers = dict(reply.headers)
        if reply.body is not None:
            headers["content-length"] = str(len(reply.body))
        else:
            headers["transfer-encoding"] = "chunked"
        head = status_line + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1"))
        if reply.body is not None:
            writer.write(reply.body)
            await writer.drain()
            return True
        await writer.drain()
        for step in reply.steps:
            if isinstance(step, (int, float)):
                await asyncio.sleep(step)
            else:
                writer.write(b"%x\r\n%s\r\n" % (len(step), step))
                await writer.drain()
        if reply.ending == "abort":
            writer.transport.abort()
            return False
        if reply.ending == "hold":
            try:
                while await reader.read(4096):
                    pass
            finally:
                self.disconnected.set()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


@pytest.fixture
def fake_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    yield server
    server.stop()


@dataclass
class Outcome:
    """What one provider stream produced: its events and the ProviderError that ended it, if any."""

    events: list[ProviderEvent]
    error: ProviderError | None

    @property
    def text(self) -> str:
        return "".join(event.text for event in self.events if isinstance(event, TextDelta))

    def of_type(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


async def consume(stream: AsyncIterator[ProviderEvent]) -> Outcome:
    """Drain a provider stream; any exception other than ProviderError propagates (a test failure)."""
    events: list[ProviderEvent] = []
    try:
        async for event in stream:
            events.append(event)
    except ProviderError as error:
        return Outcome(events, error)
    return Outcome(events, None)


@pytest.fixture
def run_stream() -> Callable[..., list[Outcome]]:
    """Run `provider.stream(request)` for each request in turn, in one event loop."""

    def run(provider: Any, *requests: ProviderRequest) -> list[Outcome]:
        async def all_of_them() -> list[Outcome]:
            return [await consume(provider.stream(request)) for request in requests]

        return asyncio.run(all_of_them())

    return run


@pytest.fixture
def stop_early(fake_server: ScriptedServer) -> Callable[..., tuple[list[ProviderEvent], bool]]:
    """Read one event, then aclose() the stream or cancel its consumer; report whether the server saw
    the disconnect while the provider (and its connection pool) was still alive."""

    def run(provider: Any, request: ProviderRequest, how: Literal["aclose", "cancel"]) -> tuple[list, bool]:
        async def scenario() -> tuple[list, bool]:
            seen: list[ProviderEvent] = []
            stream = provider.stream(request)
            if how == "aclose":
                seen.append(await anext(stream))
                await stream.aclose()
            else:
                async def reader() -> None:
                    async for event in stream:
                        seen.append(event)

                task = asyncio.create_task(reader())
                while not seen:
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            disconnected = await asyncio.to_thread(fake_server.disconnected.wait, 5)
            return seen, disconnected

        return asyncio.run(scenario())

    return run


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
