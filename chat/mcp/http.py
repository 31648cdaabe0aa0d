"""`/mcp`: Streamable HTTP in front of the MCP SDK's transport, with the REST API's keys and errors.

Before the SDK sees a request, this endpoint checks the Host like Django does, authenticates the
Bearer key with the REST authentication class (401 in the REST error shape otherwise), applies the
per-key rate limit, and bounds the body. The server is stateless (no `Mcp-Session-Id`): any
process answers any request. Calls answer as JSON, except `send_chat_message`, which is routed to
a transport that answers as Server-Sent Events so progress can flow while the reply is written.

The SDK's session managers need a running task group. Daphne sends no lifespan events, so the
managers start on the first request, on the server's event loop, and live as long as it does.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from dataclasses import dataclass

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from mcp.server import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer

from chat.mcp.server import build_server, scope_for_authorization
from chat.mcp.tools import TOOLS
from workspaces.authentication import ApiKeyAuthentication
from workspaces.errors import PayloadTooLarge, error_body, exception_handler
from workspaces.tenancy import Scope
from workspaces.throttling import ApiKeyRateThrottle, count_failed_authentication

logger = logging.getLogger(__name__)

SCOPE_KEY = "tenex.scope"  # where the authenticated Scope rides in the ASGI scope, for tool calls
STREAMING_TOOLS = frozenset(tool.name for tool in TOOLS if tool.streams_reply)


async def request_scope(ctx: ServerRequestContext) -> Scope | None:
    request = ctx.request
    return request.scope.get(SCOPE_KEY) if request is not None else None


def _answers_as_stream(body: bytes) -> bool:
    """Whether this JSON-RPC body calls a tool whose progress must flow (so SSE, not one JSON body)."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return False
    params = message.get("params")
    return isinstance(params, dict) and params.get("name") in STREAMING_TOOLS


async def _send_error(send, exc: exceptions.APIException, headers: dict[str, str] | None = None) -> None:
    """An error response byte-for-byte as the REST API renders it."""
    response = exception_handler(exc, {})
    await _send_json(send, response.status_code, response.data, {**response.headers, **(headers or {})})


async def _send_json(send, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
    fields = {**(headers or {}), "Content-Type": "application/json"}
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in fields.items()
            ],
        }
    )
    await send({"type": "http.response.body", "body": JSONRenderer().render(data)})


class _ClientGone(Exception):
    pass


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is longer than `limit`."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _replaying(body: bytes, receive):
    """`receive` that hands out the already-read body once, then the client's later messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


@dataclass
class _Managers:
    json: StreamableHTTPSessionManager
    sse: StreamableHTTPSessionManager
    ready: asyncio.Event
    task: asyncio.Task | None = None


class McpEndpoint:
    """The ASGI application for `/mcp`."""

    def __init__(self) -> None:
        self.server = build_server(request_scope)
        # Per event loop (one under daphne): a manager's task group belongs to the loop it runs on.
        self._managers: dict[asyncio.AbstractEventLoop, _Managers] = {}

    async def __call__(self, scope, receive, send) -> None:
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        # Each request gets its own thread for database work, as Django's own ASGI handler does.
        async with ThreadSensitiveContext():
            try:
                await self._serve(scope, receive, tracked_send)
            except Exception:
                logger.exception("MCP request failed")
                if started:
                    raise
                await _send_json(send, 500, error_body("server_error", "Internal server error."))

    async def _serve(self, scope, receive, send) -> None:
        request = ASGIRequest(scope, io.BytesIO())
        try:
            request.get_host()
        except DisallowedHost:
            await _send_error(send, exceptions.ValidationError("Bad request."))
            return
        authorization = request.META.get("HTTP_AUTHORIZATION")
        try:
            key_scope = await database_sync_to_async(scope_for_authorization)(authorization, request.META)
        except exceptions.Throttled as throttled:
            await _send_error(send, throttled)
            return
        if key_scope is None:
            # A 401 counts against the client's address, as in the REST API; past its limit, a 429.
            wait = await sync_to_async(count_failed_authentication, thread_sensitive=False)(request)
            if wait is not None:
                await _send_error(send, exceptions.Throttled(wait))
                return
            challenge = ApiKeyAuthentication().authenticate_header(request)
            await _send_error(send, exceptions.NotAuthenticated(), {"WWW-Authenticate": challenge})
            return
        request.auth = key_scope
        throttle = ApiKeyRateThrottle()
        # Off the event loop: with Redis the count is a network round trip.
        if not await sync_to_async(throttle.allow_request, thread_sensitive=False)(request, None):
            await _send_error(send, exceptions.Throttled(throttle.wait()))
            return
        if scope["method"] != "POST":
            # Stateless: no standalone GET stream and no session to DELETE.
            await _send_error(send, exceptions.MethodNotAllowed(scope["method"]), {"Allow": "POST"})
            return
        try:
            body = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        except _ClientGone:
            return  # nobody left to answer
        if body is None:
            await _send_error(send, PayloadTooLarge())
            return
        managers = await self._running_managers()
        manager = managers.sse if _answers_as_stream(body) else managers.json
        await manager.handle_request({**scope, SCOPE_KEY: key_scope}, _replaying(body, receive), send)

    async def _running_managers(self) -> _Managers:
        loop = asyncio.get_running_loop()
        managers = self._managers.get(loop)
        if managers is None:
            managers = _Managers(
                json=self._manager(json_response=True), sse=self._manager(json_response=False), ready=asyncio.Event()
            )
            # A context of its own: the managers outlive the request that happened to start them.
            managers.task = loop.create_task(self._run(managers), context=contextvars.Context())
            self._managers[loop] = managers
        if not managers.ready.is_set():
            ready = asyncio.ensure_future(managers.ready.wait())
            await asyncio.wait({ready, managers.task}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if managers.task.done():
                self._managers.pop(loop, None)
                managers.task.result()  # raises why the managers could not start
        return managers

    def _manager(self, *, json_response: bool) -> StreamableHTTPSessionManager:
        return StreamableHTTPSessionManager(
            app=self.server,
            json_response=json_response,
            stateless=True,
            max_request_body_size=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        )

    @staticmethod
    async def _run(managers: _Managers) -> None:
        async with managers.json.run(), managers.sse.run():
            managers.ready.set()
            await asyncio.Event().wait()  # until the loop shuts down


mcp_endpoint = McpEndpoint()
