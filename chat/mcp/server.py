"""The MCP server: tool calls as REST-shaped results, errors in the REST error shape, replies as progress.

One `Server` definition serves both transports; they differ only in how a call finds its key's
Scope (`ScopeResolver`): from the HTTP request that the endpoint authenticated, or from the key in
`TENEX_API_KEY` for stdio, re-checked on every call so a revoked key stops working at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import mcp_types as types
from channels.db import database_sync_to_async
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from rest_framework import exceptions

from chat.mcp.tools import TOOLS, TOOLS_BY_NAME, ChatTool, as_json
from chat.stream.log import TERMINAL_TYPES
from chat.stream.sse import follow_events
from workspaces.authentication import ApiKeyAuthentication
from workspaces.errors import error_body, exception_handler
from workspaces.parsers import JsonTooDeep, check_depth
from workspaces.tenancy import Scope, tenant_context

logger = logging.getLogger(__name__)

SERVER_NAME = "tenex-chat"
INSTRUCTIONS = (
    "Chat threads and messages of one tenex workspace, as the API key allows. Results are the REST "
    "API's JSON objects (threads, messages); errors carry {\"error\": {\"code\", \"message\", \"fields\"}}. "
    "send_chat_message waits for the assistant's reply and streams it as progress notifications."
)

ScopeResolver = Callable[[ServerRequestContext], Awaitable[Scope | None]]
ProgressReporter = Callable[[float, float | None, str | None], Awaitable[None]]


# --- keys --------------------------------------------------------------------------------------
def scope_for_authorization(header: str | None, meta: dict | None = None) -> Scope | None:
    """The Scope an `Authorization` header authenticates as, by the REST API's own rules; None if refused.

    Malformed keys are refused before any query; unknown, revoked and expired ones after the lookup.
    With the request's `meta` (its client address), an address past `TENEX_ANON_RATE_LIMIT` raises
    Throttled before the lookup, as the REST API answers 429.
    """
    found = dict(meta or {})
    found.pop("HTTP_AUTHORIZATION", None)
    request = SimpleNamespace(META=found if header is None else {**found, "HTTP_AUTHORIZATION": header})
    try:
        authenticated = ApiKeyAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed:
        return None
    return authenticated[1] if authenticated else None


def key_resolver(raw_key: str) -> ScopeResolver:
    """Resolve every call with this key (stdio, in-process clients)."""

    async def resolve(ctx: ServerRequestContext) -> Scope | None:
        return await database_sync_to_async(scope_for_authorization)(f"Bearer {raw_key}")

    return resolve


# --- results -----------------------------------------------------------------------------------
def _text(data: Any) -> list[types.TextContent]:
    return [types.TextContent(type="text", text=json.dumps(data, ensure_ascii=False))]


def success_result(data: dict) -> types.CallToolResult:
    """Structured content is the REST object; the text block carries the same JSON for older clients."""
    return types.CallToolResult(content=_text(data), structured_content=data)


def error_result(exc: Exception) -> types.CallToolResult:
    """A tool error with the REST API's error body, e.g. {"error": {"code": "not_found", ...}}."""
    response = exception_handler(exc, {})
    if response is None:
        logger.exception("MCP tool call failed", exc_info=exc)
        body = error_body("server_error", "Internal server error.")
    else:
        body = as_json(response.data)
    return types.CallToolResult(content=_text(body), structured_content=body, is_error=True)


# --- calls -------------------------------------------------------------------------------------
async def _in_workspace(scope: Scope, tool: ChatTool, arguments: dict) -> dict:
    def run() -> dict:
        with tenant_context(scope.workspace_id):
            return tool.run(scope, arguments)

    return await database_sync_to_async(run)()


async def reply_events(workspace_id: str, message_id: str) -> AsyncIterator[dict]:
    """A reply's stream events from its start until `done` or `error`, as the SSE endpoint reads them."""
    batches = follow_events(workspace_id, message_id, 0)
    try:
        async for batch in batches:
            for event in batch:
                yield event
    finally:
        await batches.aclose()


async def follow_reply(workspace_id: str, reply: dict, report_progress: ProgressReporter) -> dict:
    """Report each delta as progress and answer the reply in its final state.

    Generation runs on the runtime loop, not in this call: if the call is cancelled or the client
    goes away, the reply still finishes and is saved.
    """
    final = None
    async for event in reply_events(workspace_id, reply["id"]):
        if event["type"] == "delta":
            await report_progress(event["seq"], None, event["delta"] or "")
        elif event["type"] in TERMINAL_TYPES:
            final = event.get("message")
    if final is None:  # the thread was deleted while the reply was written
        raise exceptions.NotFound()
    return final


async def call_chat_tool(
    tool: ChatTool, scope: Scope, arguments: dict, report_progress: ProgressReporter
) -> types.CallToolResult:
    if tool.scope not in scope.scopes:
        return error_result(exceptions.PermissionDenied(f"This API key lacks the `{tool.scope}` scope."))
    try:
        check_depth(arguments)  # the REST API's nesting limit, for the same bodies reached by MCP
    except JsonTooDeep as exc:
        return error_result(exceptions.ParseError(str(exc)))
    try:
        data = await _in_workspace(scope, tool, arguments)
        if tool.streams_reply:
            data = await follow_reply(scope.workspace_id, data, report_progress)
    except Exception as exc:  # noqa: BLE001 - every failure is answered as a tool error, never a crash
        return error_result(exc)
    return success_result(data)


def _definition(tool: ChatTool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=types.ToolAnnotations(
            title=tool.title,
            read_only_hint=tool.read_only,
            destructive_hint=tool.destructive,
            idempotent_hint=tool.idempotent or tool.read_only,
            open_world_hint=False,
        ),
    )


def _input_schema(name: str) -> dict | None:
    tool = TOOLS_BY_NAME.get(name)
    return tool.input_schema if tool is not None else None


def build_server(resolve_scope: ScopeResolver) -> Server:
    definitions = [_definition(tool) for tool in TOOLS]

    async def list_tools(
        ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=definitions)

    async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = TOOLS_BY_NAME.get(params.name)
        if tool is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool {params.name[:100]!r}; see tools/list.")
        scope = await resolve_scope(ctx)
        if scope is None:
            return error_result(exceptions.NotAuthenticated())
        return await call_chat_tool(tool, scope, params.arguments or {}, ctx.session.report_progress)

    return Server(
        SERVER_NAME,
        version="1.0.0",
        title="tenex chat",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # Lets the 2026-07-28 HTTP entry check `Mcp-Param-*` headers without running tools/list.
        get_tool_input_schema=_input_schema,
    )


# JSON-RPC's range for errors a server defines; the MCP SDK names none for "not authorized".
UNAUTHORIZED = -32001


# Left to the SDK so a client connects (a refused probe only sends it on to the other protocol
# era, and the answer it finally shows is about that, not the key).
_HANDSHAKE = frozenset({"initialize", "server/discover"})


def refusing_server(problem: str) -> Server:
    """A server that connects, then answers every request with `problem` as its error: how a
    stdio client learns that its key, not the connection, is at fault."""
    server = build_server(key_resolver(""))

    async def refuse(ctx: ServerRequestContext, call_next):
        if ctx.request_id is None or ctx.method in _HANDSHAKE:
            return await call_next(ctx)
        raise MCPError(code=UNAUTHORIZED, message=problem)

    server.middleware.insert(0, refuse)
    return server
