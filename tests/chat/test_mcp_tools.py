"""The MCP tools in process (the SDK's in-memory client): failures, keys, and the store being down."""

from __future__ import annotations

import anyio
import pytest
from django.test import override_settings
from mcp import Client
from mcp.shared.exceptions import MCPError

from chat.mcp.server import build_server, key_resolver
from workspaces.services import api_key_find, api_key_revoke

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = "/api/v1/chat/threads"


@pytest.fixture(autouse=True)
def fast_tokens(settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 0


def calls(key: str, *steps: tuple[str, dict]) -> list:
    """Run tool calls in order on one in-process connection acting as `key`; their results."""

    async def scenario():
        async with Client(build_server(key_resolver(key))) as client:
            return [await client.call_tool(name, arguments) for name, arguments in steps]

    return anyio.run(scenario)


def test_provider_failure_answers_the_failed_message(alice, settings):
    settings.TENEX_LLM_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_API_KEY = "sk-test"
    settings.TENEX_LLM_MAX_RETRIES = 0
    thread = alice.client.post(THREADS, {}, format="json").json()
    [result] = calls(alice.key, ("send_chat_message", {"thread_id": thread["id"], "content": "Hello?"}))
    assert not result.is_error
    message = result.structured_content
    assert message["status"] == "failed" and message["error"]["code"] == "provider_unavailable"
    assert alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"][-1] == message


def test_unreachable_stream_store_is_unavailable_and_writes_nothing(alice):
    thread = alice.client.post(THREADS, {}, format="json").json()
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        [result] = calls(alice.key, ("send_chat_message", {"thread_id": thread["id"], "content": "Hi"}))
    assert result.is_error and result.structured_content["error"]["code"] == "unavailable"
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 0


def test_a_key_revoked_after_connecting_is_refused_on_the_next_call(alice):
    async def scenario():
        async with Client(build_server(key_resolver(alice.key))) as client:
            before = await client.call_tool("list_chat_threads", {})
            await anyio.to_thread.run_sync(lambda: api_key_revoke(api_key=api_key_find(alice.key)))
            return before, await client.call_tool("list_chat_threads", {})

    before, after = anyio.run(scenario)
    assert not before.is_error
    assert after.is_error and after.structured_content["error"]["code"] == "unauthorized"


def test_an_unknown_tool_is_a_protocol_error(alice):
    async def scenario():
        async with Client(build_server(key_resolver(alice.key))) as client:
            with pytest.raises(MCPError, match="Unknown tool 'drop_all_threads'"):
                await client.call_tool("drop_all_threads", {})

    anyio.run(scenario)


def test_every_result_carries_its_json_as_text_too(alice):
    import json

    created, missing = calls(
        alice.key, ("create_chat_thread", {"title": "t"}), ("get_chat_thread", {"thread_id": "thr_nope"})
    )
    assert json.loads(created.content[0].text) == created.structured_content
    assert json.loads(missing.content[0].text) == missing.structured_content
    assert missing.structured_content == {"error": {"code": "not_found", "message": "Not found.", "fields": None}}
