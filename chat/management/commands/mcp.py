"""`python manage.py mcp`: the chat tools over MCP on stdin/stdout, as the key in TENEX_API_KEY."""

from __future__ import annotations

import os
import time

import anyio
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCError, JSONRPCRequest, JSONRPCResponse

from chat.mcp.server import build_server, key_resolver, refusing_server, scope_for_authorization
from chat.stream.runtime import get_runtime

# After stdin closes, replies this process is still writing get this long to finish and be saved.
DRAIN_SECONDS = 120.0


class Command(BaseCommand):
    help = (
        "Serve the chat tools over the Model Context Protocol on stdin/stdout, acting as the API key "
        "in TENEX_API_KEY (same keys, scopes and isolation as the REST API)."
    )
    requires_system_checks = ()  # stdout belongs to the protocol; start fast

    def handle(self, *args, **options):
        raw_key = os.environ.get("TENEX_API_KEY", "").strip()
        problem = None
        if not raw_key:
            problem = "TENEX_API_KEY is not set: put the API key (tnx_...) the server acts as in it."
        elif scope_for_authorization(f"Bearer {raw_key}") is None:
            problem = "TENEX_API_KEY is not a valid API key (malformed, unknown, revoked or expired)."
        if problem is not None:
            # An MCP client that launched this command shows what the server answers, not its
            # stderr: it connects, and every request it sends gets this sentence as its error
            # rather than a closed connection. Stopped by stdin closing, then a failed exit.
            connections.close_all()
            self.stderr.write(problem)
            anyio.run(refuse, problem)
            raise CommandError(problem)
        connections.close_all()  # tool calls use their own worker thread's connection
        # As under daphne: the runtime's sweep also ends replies a previous process left streaming.
        get_runtime()
        anyio.run(serve, raw_key)
        drain_generations()


async def serve(raw_key: str) -> None:
    server = build_server(key_resolver(raw_key))
    async with stdio_server() as (stdin_messages, stdout_messages):
        to_server, from_stdin = anyio.create_memory_object_stream(0)
        to_stdout, from_server = anyio.create_memory_object_stream(0)
        pending: set[object] = set()  # ids of requests read but not yet answered
        answered = anyio.Event()

        async def read_requests() -> None:
            # The SDK cancels requests still running when its input ends; a client that writes its
            # requests and closes stdin (a pipe) would get "Connection closed" for them. So the
            # server's input ends only once every request read has been answered.
            async with to_server:
                async for message in stdin_messages:
                    if isinstance(message, SessionMessage) and isinstance(message.message, JSONRPCRequest):
                        pending.add(message.message.id)
                    await to_server.send(message)
                while pending:
                    await answered.wait()

        async def write_answers() -> None:
            nonlocal answered
            async with stdout_messages:
                async for message in from_server:
                    await stdout_messages.send(message)
                    if isinstance(message.message, JSONRPCResponse | JSONRPCError):
                        pending.discard(message.message.id)
                        answered.set()
                        answered = anyio.Event()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_requests)
            tasks.start_soon(write_answers)
            async with to_stdout:
                await server.run(from_stdin, to_stdout, server.create_initialization_options())


async def refuse(problem: str) -> None:
    server = refusing_server(problem)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def drain_generations() -> None:
    """Let replies started here finish: generation outlives the client, even a stdio one."""
    time.sleep(0.1)  # a reply committed just before stdin closed registers on the runtime loop
    get_runtime().drain(DRAIN_SECONDS)
