"""`python manage.py mcp`: the chat tools over stdio, as the key in TENEX_API_KEY (PostgreSQL + Redis)."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest
from django.db import connection
from mcp import Client, StdioServerParameters

from tests.processes import ROOT, server_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
THREADS = "/api/v1/chat/threads"


def command_env(key: str | None) -> dict[str, str]:
    env = server_env(connection.settings_dict["NAME"])
    env["TENEX_LOCAL_TOKEN_DELAY_MS"] = "0"
    env.pop("TENEX_API_KEY", None)
    if key is not None:
        env["TENEX_API_KEY"] = key
    return env


def stdio_server(key: str | None) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["manage.py", "mcp"], env=command_env(key), cwd=ROOT)


def test_tools_over_stdio_answer_the_rest_objects(alice):
    progress: list[str] = []

    async def scenario():
        async def on_progress(value, total, message):
            progress.append(message)

        async with Client(stdio_server(alice.key)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            created = await client.call_tool("create_chat_thread", {"title": "From stdio"})
            listed = await client.call_tool("list_chat_threads", {})
            reply = await client.call_tool(
                "send_chat_message", {"thread_id": created.structured_content["id"], "content": "What do we sell?"},
                progress_callback=on_progress,
            )
            return names, created, listed, reply

    names, created, listed, reply = anyio.run(scenario)
    assert "send_chat_message" in names and len(names) == 9
    thread = created.structured_content
    assert not created.is_error and thread["title"] == "From stdio" and thread["user_id"] == alice.id
    assert listed.structured_content == {"results": [thread], "next_cursor": None}
    message = reply.structured_content
    assert message["status"] == "complete" and "".join(progress) == message["content"]
    history = alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"]
    assert history[-1] == message


def test_stdio_keeps_workspaces_apart(alice, outsider):
    thread = alice.client.post(THREADS, {"title": "secret"}, format="json").json()

    async def scenario():
        async with Client(stdio_server(outsider.key)) as client:
            return (
                await client.call_tool("get_chat_thread", {"thread_id": thread["id"]}),
                await client.call_tool("list_chat_threads", {}),
            )

    found, listed = anyio.run(scenario)
    assert found.is_error and found.structured_content["error"]["code"] == "not_found"
    assert listed.structured_content["results"] == []


@pytest.mark.parametrize(("key", "message"), [(None, "TENEX_API_KEY is not set"), ("tnx_bogus", "not a valid API key")])
def test_refuses_to_start_without_a_valid_key(key, message):
    done = subprocess.run(
        [sys.executable, "manage.py", "mcp"], check=False, cwd=ROOT, env=command_env(key), input=b"",
        capture_output=True, timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr.decode() and done.stdout == b""


@pytest.mark.parametrize(("key", "message"), [(None, "TENEX_API_KEY is not set"), ("tnx_bogus", "not a valid API key")])
def test_a_client_is_told_the_key_is_the_problem(key, message):
    from mcp.shared.exceptions import MCPError

    async def scenario():
        async with Client(stdio_server(key)) as client:
            await client.list_tools()

    with pytest.raises(BaseException) as raised:  # noqa: PT011 - the MCPError arrives inside task groups
        anyio.run(scenario)
    error = raised.value
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    assert isinstance(error, MCPError), repr(raised.value)
    assert message in error.error.message
