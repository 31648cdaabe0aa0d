"""The MCP endpoint at /mcp over Streamable HTTP, against a real daphne process (PostgreSQL + Redis)."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager, contextmanager

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.factories import issue_key
from tests.processes import daphne_process
from workspaces.services import api_key_find, api_key_revoke

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
THREADS = "/api/v1/chat/threads"
CONTRACT_TOOLS = {
    "list_chat_threads", "create_chat_thread", "get_chat_thread", "list_chat_messages", "send_chat_message",
    "rename_chat_thread", "pin_chat_thread", "archive_chat_thread", "delete_chat_thread",
}
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "Missing or invalid API key.", "fields": None}}
NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "fields": None}}


@contextmanager
def mcp_daphne(token_delay_ms: int):
    """A daphne process on the test database serving /mcp; local replies pause `token_delay_ms` per word."""
    with daphne_process(TENEX_LOCAL_TOKEN_DELAY_MS=str(token_delay_ms)) as (url, _process):
        yield url


@pytest.fixture(scope="module")
def base(django_db_setup):
    """One daphne process for the module, with instant local replies."""
    with mcp_daphne(token_delay_ms=0) as url:
        yield url


@asynccontextmanager
async def connect(base: str, key: str, mode: str = "auto"):
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def call(base: str, key: str, name: str, arguments: dict | None = None, mode: str = "auto"):
    async def scenario():
        async with connect(base, key, mode) as client:
            return await client.call_tool(name, arguments or {})

    return anyio.run(scenario)


def ok(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


def rest(base: str, key: str, path: str) -> dict:
    response = httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_lists_the_contract_tools_with_schemas(base, alice):
    async def scenario():
        async with connect(base, alice.key) as client:
            return (await client.list_tools()).tools

    tools = anyio.run(scenario)
    assert {tool.name for tool in tools} == CONTRACT_TOOLS
    for tool in tools:
        assert tool.description and tool.input_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False
        assert tool.output_schema["type"] == "object"
    by_name = {tool.name: tool for tool in tools}
    assert by_name["send_chat_message"].input_schema["required"] == ["thread_id", "content"]
    assert set(by_name["list_chat_threads"].input_schema["properties"]) >= {
        "user_id", "pinned", "archived", "cursor", "limit"
    }


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 per-request envelope, and the handshake era
def test_thread_lifecycle_matches_the_rest_objects(base, alice, mode):
    created = ok(call(base, alice.key, "create_chat_thread", {"title": "Pricing", "system_prompt": "Be brief."}, mode))
    thread_id = created["id"]
    assert created == rest(base, alice.key, f"{THREADS}/{thread_id}")
    assert ok(call(base, alice.key, "get_chat_thread", {"thread_id": thread_id}, mode)) == created

    listed = ok(call(base, alice.key, "list_chat_threads", {}, mode))
    assert listed == {"results": [created], "next_cursor": None}

    renamed = ok(call(base, alice.key, "rename_chat_thread", {"thread_id": thread_id, "title": "Pricing v2"}, mode))
    assert renamed["title"] == "Pricing v2"
    pinned = ok(call(base, alice.key, "pin_chat_thread", {"thread_id": thread_id, "pinned": True}, mode))
    assert pinned["pinned"] is True
    assert ok(call(base, alice.key, "list_chat_threads", {"pinned": False}, mode))["results"] == []
    archived = ok(call(base, alice.key, "archive_chat_thread", {"thread_id": thread_id, "archived": True}, mode))
    assert archived["archived"] is True and archived == rest(base, alice.key, f"{THREADS}/{thread_id}")
    assert ok(call(base, alice.key, "list_chat_threads", {}, mode))["results"] == []
    assert ok(call(base, alice.key, "list_chat_threads", {"archived": True}, mode))["results"] == [archived]

    deleted = ok(call(base, alice.key, "delete_chat_thread", {"thread_id": thread_id}, mode))
    assert deleted == {"id": thread_id, "object": "thread", "deleted": True}
    gone = call(base, alice.key, "get_chat_thread", {"thread_id": thread_id}, mode)
    assert gone.is_error and gone.structured_content == NOT_FOUND


def test_lists_page_with_the_rest_cursor(base, alice):
    ids = [ok(call(base, alice.key, "create_chat_thread", {"title": f"t{n}"}))["id"] for n in range(3)]
    seen, cursor = [], None
    while True:
        page = ok(call(base, alice.key, "list_chat_threads", {"limit": 2, "cursor": cursor}))
        seen += [thread["id"] for thread in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    bad = call(base, alice.key, "list_chat_threads", {"cursor": "garbage"})
    assert bad.is_error and bad.structured_content["error"]["fields"] == {"cursor": ["The cursor is invalid."]}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_send_streams_deltas_as_progress_and_answers_the_final_message(base, alice, mode):
    thread_id = ok(call(base, alice.key, "create_chat_thread", {}))["id"]
    progress: list[tuple[float, str]] = []

    async def scenario():
        async def on_progress(value, total, message):
            progress.append((value, message))

        async with connect(base, alice.key, mode) as client:
            return await client.call_tool(
                "send_chat_message", {"thread_id": thread_id, "content": "How do we price the Pro plan?"},
                progress_callback=on_progress,
            )

    reply = ok(anyio.run(scenario))
    assert reply["status"] == "complete" and reply["role"] == "assistant" and reply["content"]
    assert len(progress) > 3
    assert "".join(message for _, message in progress) == reply["content"]
    assert [value for value, _ in progress] == sorted({value for value, _ in progress})  # rising, no repeats
    history = rest(base, alice.key, f"{THREADS}/{thread_id}/messages")["results"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1] == reply
    listed = ok(call(base, alice.key, "list_chat_messages", {"thread_id": thread_id}))
    assert listed == {"results": history, "next_cursor": None}
    newest = ok(call(base, alice.key, "list_chat_messages", {"thread_id": thread_id, "order": "desc", "limit": 1}))
    assert newest["results"] == [reply] and newest["next_cursor"]


def test_send_answers_as_server_sent_events_and_other_calls_as_json(base, alice):
    headers = {
        "Authorization": f"Bearer {alice.key}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }

    def post(name: str, arguments: dict) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        return httpx.post(f"{base}/mcp", json=body, headers=headers, timeout=30)

    created = post("create_chat_thread", {})
    assert created.status_code == 200 and created.headers["content-type"].startswith("application/json")
    thread_id = created.json()["result"]["structuredContent"]["id"]
    sent = post("send_chat_message", {"thread_id": thread_id, "content": "Hello"})
    assert sent.status_code == 200 and sent.headers["content-type"].startswith("text/event-stream")
    frames = [json.loads(line[len("data: "):]) for line in sent.text.splitlines() if line.startswith("data: ")]
    assert frames[-1]["result"]["structuredContent"]["status"] == "complete"


def test_a_cancelled_call_leaves_the_reply_generating(alice):
    with mcp_daphne(token_delay_ms=30) as slow:
        thread_id = ok(call(slow, alice.key, "create_chat_thread", {}))["id"]

        async def scenario():
            received: list[str] = []
            first = anyio.Event()

            async def on_progress(value, total, message):
                received.append(message)
                first.set()

            async with connect(slow, alice.key) as client, anyio.create_task_group() as group:

                async def send():
                    await client.call_tool(
                        "send_chat_message", {"thread_id": thread_id, "content": "Tell me about our pricing"},
                        progress_callback=on_progress,
                    )

                group.start_soon(send)
                await first.wait()
                group.cancel_scope.cancel()
            return received

        received = anyio.run(scenario)
        assert rest(slow, alice.key, f"{THREADS}/{thread_id}/messages")["results"][-1]["status"] == "streaming"
        deadline = time.monotonic() + 30
        while (
            reply := rest(slow, alice.key, f"{THREADS}/{thread_id}/messages")["results"][-1]
        )["status"] == "streaming":
            assert time.monotonic() < deadline, "the reply stopped being written"
            time.sleep(0.1)
    assert reply["role"] == "assistant" and reply["status"] == "complete"
    assert reply["content"].startswith("".join(received)) and len(reply["content"]) > len("".join(received))


def test_another_workspace_thread_is_the_same_not_found_as_a_missing_one(base, alice, outsider):
    thread_id = ok(call(base, alice.key, "create_chat_thread", {"title": "secret"}))["id"]
    missing = "thr_" + "0" * 22
    for name, extra in [
        ("get_chat_thread", {}),
        ("list_chat_messages", {}),
        ("send_chat_message", {"content": "hi"}),
        ("rename_chat_thread", {"title": "mine"}),
        ("pin_chat_thread", {"pinned": True}),
        ("archive_chat_thread", {"archived": True}),
        ("delete_chat_thread", {}),
    ]:
        theirs = call(base, outsider.key, name, {"thread_id": thread_id, **extra})
        nowhere = call(base, outsider.key, name, {"thread_id": missing, **extra})
        assert theirs.is_error and theirs.structured_content == NOT_FOUND, name
        assert theirs.model_dump() == nowhere.model_dump(), name
    assert ok(call(base, outsider.key, "list_chat_threads", {}))["results"] == []
    assert rest(base, alice.key, f"{THREADS}/{thread_id}")["title"] == "secret"


def test_read_only_key_reads_but_cannot_write(base, alice, read_only_key):
    thread_id = ok(call(base, alice.key, "create_chat_thread", {}))["id"]
    assert ok(call(base, read_only_key, "get_chat_thread", {"thread_id": thread_id}))["id"] == thread_id
    for name, arguments in [
        ("create_chat_thread", {}),
        ("send_chat_message", {"thread_id": thread_id, "content": "hi"}),
        ("delete_chat_thread", {"thread_id": thread_id}),
    ]:
        refused = call(base, read_only_key, name, arguments)
        assert refused.is_error
        assert refused.structured_content["error"]["code"] == "forbidden"
        assert "chat:write" in refused.structured_content["error"]["message"]
    assert ok(call(base, alice.key, "list_chat_threads", {}))["results"][0]["message_count"] == 0


def test_service_key_names_the_member(base, workspace, alice, bob, service_key):
    refused = call(base, service_key, "create_chat_thread", {"title": "x"})
    assert refused.is_error and set(refused.structured_content["error"]["fields"]) == {"user_id"}
    for_bob = ok(call(base, service_key, "create_chat_thread", {"title": "for bob", "user_id": bob.id}))
    assert for_bob["user_id"] == bob.id
    for_alice = ok(call(base, alice.key, "create_chat_thread", {"title": "alice's"}))
    everyone = ok(call(base, service_key, "list_chat_threads", {}))["results"]
    assert {t["id"] for t in everyone} == {for_bob["id"], for_alice["id"]}
    only_bob = ok(call(base, service_key, "list_chat_threads", {"user_id": bob.id}))["results"]
    assert [t["id"] for t in only_bob] == [for_bob["id"]]
    assert ok(call(base, bob.key, "list_chat_threads", {}))["results"] == [for_bob]
    assert call(base, bob.key, "get_chat_thread", {"thread_id": for_alice["id"]}).structured_content == NOT_FOUND


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("create_chat_thread", {"title": 5}, "title"),
        ("create_chat_thread", {"title": "a\x00b"}, "title"),
        ("create_chat_thread", {"colour": "red"}, "colour"),
        ("create_chat_thread", {"agent_id": "agt_" + "x" * 10_000}, "agent_id"),
        ("list_chat_threads", {"limit": "5"}, "limit"),
        ("list_chat_threads", {"pinned": "yes"}, "pinned"),
        ("list_chat_threads", {"user_id": "usr_" + "x" * 10_000}, "user_id"),
        ("get_chat_thread", {"thread_id": 7}, "thread_id"),
        ("get_chat_thread", {}, "thread_id"),
        ("rename_chat_thread", {"thread_id": "thr_x", "title": "t", "pinned": True}, "pinned"),
        ("pin_chat_thread", {"thread_id": "thr_x"}, "pinned"),
        ("send_chat_message", {"thread_id": "thr_x"}, "content"),
    ],
)
def test_bad_arguments_are_tool_errors_naming_the_field(base, alice, name, arguments, field):
    result = call(base, alice.key, name, arguments)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "invalid_request" and field in error["fields"], error
    assert result.content[0].text  # a readable message for the model


def test_bad_values_for_an_existing_thread_change_nothing(base, alice):
    thread = ok(call(base, alice.key, "create_chat_thread", {"title": "keep"}))
    for name, arguments in [
        ("rename_chat_thread", {"title": "new\x00"}),
        ("rename_chat_thread", {"title": ""}),
        ("pin_chat_thread", {"pinned": "true"}),
        ("send_chat_message", {"content": "x" * 100_001}),
        ("send_chat_message", {"content": "hi\x00"}),
    ]:
        result = call(base, alice.key, name, {"thread_id": thread["id"], **arguments})
        assert result.is_error and result.structured_content["error"]["code"] == "invalid_request", name
    assert rest(base, alice.key, f"{THREADS}/{thread['id']}") == thread
    huge = call(base, alice.key, "get_chat_thread", {"thread_id": "thr_" + "x" * 10_000})
    assert huge.structured_content == NOT_FOUND


def test_missing_bad_or_revoked_key_is_401_with_the_error_body(base, workspace, alice):
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}
    revoked = issue_key(workspace, alice.user)
    api_key_revoke(api_key=api_key_find(revoked))
    for headers in [
        {},
        {"Authorization": "Bearer tnx_not-a-key"},
        {"Authorization": f"Basic {alice.key}"},
        {"Authorization": f"Bearer {revoked}"},
    ]:
        response = httpx.post(f"{base}/mcp", json=initialize, headers={**accept, **headers}, timeout=10)
        assert response.status_code == 401, headers
        assert response.json() == UNAUTHORIZED
        assert response.headers["www-authenticate"].startswith("Bearer")
    get = httpx.get(f"{base}/mcp", headers={"Authorization": f"Bearer {alice.key}"}, timeout=10)
    assert get.status_code == 405 and get.json()["error"]["code"] == "method_not_allowed"


def test_oversized_bodies_and_unknown_hosts_are_refused_in_the_error_shape(base, alice):
    auth = {"Authorization": f"Bearer {alice.key}", "Accept": "application/json, text/event-stream"}
    huge = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "create_chat_thread",
            "arguments": {"title": "x" * 3_000_000}}}
    too_large = httpx.post(f"{base}/mcp", json=huge, headers=auth, timeout=30)
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    elsewhere = httpx.post(f"{base}/mcp", json=listing, headers={**auth, "Host": "evil.example"}, timeout=10)
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "invalid_request"
