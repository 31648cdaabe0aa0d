"""The assistant end to end: knowledge, agents, attachments and the snapshot a thread answers with."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.helpers import assert_not_found, joined_deltas, parse_sse, streamed_body
from tests.providers import fake_openai as wire
from tests.providers.conftest import ScriptedServer

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = "/api/v1/chat/threads"

PRICING = (
    "The Pro plan costs 49 dollars per seat per month. It includes the analytics dashboard, "
    "unlimited campaigns and priority support."
)
VOICE = "We write in a warm, direct voice. We never use jargon and we always end with a clear next step."


@pytest.fixture(autouse=True)
def fast_tokens(settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 0


@pytest.fixture
def openai_server(settings):
    server = ScriptedServer()
    server.start()
    settings.TENEX_LLM_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = f"{server.url}/v1"
    settings.OPENAI_API_KEY = "sk-test"
    settings.TENEX_LLM_MODEL = wire.MODEL
    settings.TENEX_LLM_MAX_RETRIES = 0
    yield server
    server.stop()


def post(client, url, body):
    response = client.post(url, body, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


def send_streaming(client, thread_id, body) -> list[dict]:
    response = client.post(f"{THREADS}/{thread_id}/messages", body, format="json", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200, response.content
    return parse_sse(streamed_body(response))


def test_agent_thread_with_a_lead_quotes_the_right_passage(alice):
    post(alice.client, "/api/v1/knowledge/documents", {"title": "Pricing", "body": PRICING})
    post(alice.client, "/api/v1/knowledge/documents", {"title": "Brand voice", "body": VOICE})
    agent = post(
        alice.client, "/api/v1/agents",
        {"name": "Deal desk", "instructions": "Answer pricing questions for sales reps.",
         "tools": ["search_knowledge"]},
    )
    thread = post(alice.client, THREADS, {"agent_id": agent["id"]})
    assert thread["agent_id"] == agent["id"] and thread["context"]["agent"]["version"] == 1
    lead = {"name": "Dana Lee", "company": "Northwind", "email": "dana@northwind.test", "notes": "Asked about seats"}
    events = send_streaming(
        alice.client, thread["id"],
        {"content": "What does the Pro plan cost per seat?", "attachments": [{"type": "lead", "lead": lead}]},
    )
    assert events[-1]["event"] == "done"
    reply = events[-1]["data"]["message"]
    assert "49 dollars per seat" in reply["content"]
    assert "Brand voice" not in reply["content"].split("Pricing")[0]  # the pricing passage comes first
    assert joined_deltas(events) == reply["content"]
    calls = [e["data"]["tool_call"] for e in events if e["event"] == "tool_call"]
    assert [c["status"] for c in calls] == ["running", "complete"]
    assert calls[-1]["result"]["results"][0]["title"] == "Pricing"

    history = alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"]
    user_message, assistant_message = history
    assert assistant_message["tool_calls"] == [calls[-1]]
    [attachment] = user_message["attachments"]
    assert attachment["id"].startswith("att_") and attachment["type"] == "lead"
    assert attachment["lead"] == lead
    canonical = json.dumps(lead, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert attachment["content_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    # The assistant read the lead: its turn carried the attachment (the local provider names it).
    assert f"I also read what you attached: “{attachment['title']}”" in reply["content"]

    patched = alice.client.patch(
        f"/api/v1/agents/{agent['id']}", {"instructions": "Only answer in French."}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["version"] == 2
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["context"]["agent"]["version"] == 1


def test_document_and_file_attachments_record_what_the_assistant_saw(alice):
    document = post(
        alice.client, "/api/v1/knowledge/documents", {"title": "Case study", "body": "Acme grew 40% with us."}
    )
    upload = alice.client.post(
        "/api/v1/chat/files", {"file": _upload("notes.md", b"# Call notes\nBudget approved.")}, format="multipart"
    )
    assert upload.status_code == 201, upload.content
    file = upload.json()
    thread = post(alice.client, THREADS, {})
    events = send_streaming(
        alice.client, thread["id"],
        {
            "content": "Draft a follow-up email",
            "attachments": [
                {"type": "knowledge_document", "document_id": document["id"]}, {"type": "file", "file_id": file["id"]}
            ],
        },
    )
    assert events[-1]["event"] == "done"
    assert "“Case study”" in events[-1]["data"]["message"]["content"]  # the assistant read what was attached
    user_message = alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"][0]
    doc_attachment, file_attachment = user_message["attachments"]
    assert doc_attachment["document_id"] == document["id"]
    assert doc_attachment["content_sha256"] == hashlib.sha256(b"Acme grew 40% with us.").hexdigest()
    assert file_attachment["file_id"] == file["id"]
    assert file_attachment["content_sha256"] == hashlib.sha256(b"# Call notes\nBudget approved.").hexdigest()
    # History stays true after the document changes.
    alice.client.patch(f"/api/v1/knowledge/documents/{document['id']}", {"body": "Rewritten."}, format="json")
    again = alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"][0]["attachments"][0]
    assert again == doc_attachment


def test_references_to_another_workspace_are_404_and_store_nothing(alice, outsider):
    foreign = post(outsider.client, "/api/v1/knowledge/documents", {"title": "Secret", "body": "Globex only."})
    thread = post(alice.client, THREADS, {})
    for attachment in (
        {"type": "knowledge_document", "document_id": foreign["id"]},
        {"type": "file", "file_id": "file_doesnotexist000000000"},
    ):
        response = alice.client.post(
            f"{THREADS}/{thread['id']}/messages", {"content": "hi", "attachments": [attachment]}, format="json"
        )
        assert_not_found(response)
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 0


def test_resumed_thread_answers_from_its_snapshot_until_refreshed(alice, openai_server):
    agent = post(alice.client, "/api/v1/agents", {"name": "Copywriter", "instructions": "Write like Ogilvy."})
    alice.client.put("/api/v1/knowledge/brand", {"name": "Acme", "voice": "Plain and warm."}, format="json")
    thread = post(alice.client, THREADS, {"agent_id": agent["id"], "system_prompt": "Keep it short."})
    alice.client.patch(f"/api/v1/agents/{agent['id']}", {"instructions": "Write like a pirate."}, format="json")
    alice.client.put("/api/v1/knowledge/brand", {"name": "Acme", "voice": "Loud and brash."}, format="json")

    openai_server.reply_stream(wire.PATH, wire.text_reply(["Fine ", "copy."]))
    events = send_streaming(alice.client, thread["id"], {"content": "A headline, please"})
    assert events[-1]["data"]["message"]["content"] == "Fine copy."
    system = openai_server.bodies(wire.PATH)[-1]["messages"][0]
    assert system["role"] == "system"
    assert "Write like Ogilvy." in system["content"] and "Keep it short." in system["content"]
    assert "Plain and warm." in system["content"] and "pirate" not in system["content"]

    refreshed = alice.client.patch(f"{THREADS}/{thread['id']}", {"refresh_context": True}, format="json").json()
    assert refreshed["context"]["agent"]["version"] == 2
    openai_server.reply_stream(wire.PATH, wire.text_reply(["Arr."]))
    send_streaming(alice.client, thread["id"], {"content": "Another"})
    system = openai_server.bodies(wire.PATH)[-1]["messages"][0]["content"]
    assert "Write like a pirate." in system and "Loud and brash." in system and "Ogilvy" not in system
    history = openai_server.bodies(wire.PATH)[-1]["messages"]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]


def test_invalid_run_agent_arguments_give_a_failed_call_and_a_normal_answer(alice, openai_server):
    agent = post(
        alice.client, "/api/v1/agents",
        {
            "name": "Researcher", "instructions": "Research a company.",
            "input_schema": {"type": "object", "properties": {"company": {"type": "string"}}, "required": ["company"]},
        },
    )
    thread = post(alice.client, THREADS, {})
    arguments = json.dumps({"agent_id": agent["id"], "input": {"firm": "Globex"}})
    openai_server.reply_stream(
        wire.PATH,
        [
            wire.tool_call_delta(0, call_id="call_1", name="run_agent", arguments=arguments[:10]),
            wire.tool_call_delta(0, arguments=arguments[10:]),
            wire.chunk(finish_reason="tool_calls"),
            wire.DONE,
        ],
    )
    openai_server.reply_stream(wire.PATH, wire.text_reply(["I could not ", "run that agent."]))
    events = send_streaming(alice.client, thread["id"], {"content": "Research Globex"})
    assert events[-1]["event"] == "done"
    message = events[-1]["data"]["message"]
    assert message["status"] == "complete" and message["content"] == "I could not run that agent."
    [call] = message["tool_calls"]
    assert call["name"] == "run_agent" and call["status"] == "failed"
    assert "company" in json.dumps(call["result"])
    tool_result = openai_server.bodies(wire.PATH)[-1]["messages"][-1]
    assert tool_result["role"] == "tool" and tool_result["tool_call_id"] == "call_1"
    assert "company" in tool_result["content"]


def test_provider_failure_mid_stream_keeps_the_partial_reply(alice, openai_server):
    thread = post(alice.client, THREADS, {})
    openai_server.reply_stream(
        wire.PATH, [*wire.text_chunks(["Half ", "an "]), wire.error_chunk("The model crashed", "server_error")]
    )
    events = send_streaming(alice.client, thread["id"], {"content": "Go"})
    assert events[-1]["event"] == "error"
    error = events[-1]["data"]["error"]
    assert error["code"] == "provider_error" and error["message"]
    message = events[-1]["data"]["message"]
    assert message["status"] == "failed" and message["content"] == "Half an " == joined_deltas(events)
    assert message["error"] == error


def test_unreachable_provider_fails_the_reply_cleanly(alice, settings):
    settings.TENEX_LLM_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_API_KEY = "sk-test"
    settings.TENEX_LLM_MAX_RETRIES = 0
    thread = post(alice.client, THREADS, {})
    events = send_streaming(alice.client, thread["id"], {"content": "Hello?"})
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["data"]["error"]["code"] == "provider_unavailable"
    assert events[0]["data"]["message"]["status"] == "failed"


def _upload(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="text/markdown")
