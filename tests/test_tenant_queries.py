"""Every tenant table carries workspace_id, and every query the API sends to one says which workspace.

Row-level security makes a forgotten filter harmless; this makes it visible. A query that names its
workspace is one a database sharded by workspace_id (Citus, docs/scaling.md) routes to one node;
one that does not fans out to every node.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import Message
from workspaces.rls import tenant_tables
from workspaces.tenancy import TenantManager, tenant_context

pytestmark = pytest.mark.django_db
IDENTITY_TABLES = {"workspaces_apikey", "workspaces_membership"}  # reached before a workspace is known
CONTENT_APPS = {"chat", "knowledge", "agents"}

TABLE_REFERENCE = re.compile(r'\b(FROM|JOIN|UPDATE|INTO)\s+"?(\w+)"?(?:\s+(?:AS\s+)?"?(\w+)"?)?', re.IGNORECASE)
NOT_AN_ALIAS = {"WHERE", "INNER", "LEFT", "RIGHT", "FULL", "JOIN", "ON", "SET", "ORDER", "GROUP", "LIMIT", "VALUES",
                "USING", "CROSS", "FOR", "OFFSET", "RETURNING", "HAVING", "UNION", "AND", "OR", "WINDOW"}


def test_every_model_of_the_content_apps_carries_workspace_id_and_a_scoped_manager():
    for model in apps.get_models():
        if model._meta.app_label not in CONTENT_APPS:
            continue
        columns = {field.column for field in model._meta.concrete_fields}
        assert "workspace_id" in columns, f"{model._meta.label} holds tenant content without workspace_id"
        assert isinstance(model._default_manager, TenantManager), f"{model._meta.label}: not a scoped manager"
        assert model._meta.db_table in tenant_tables()


def tenant_statements_without_workspace(statements: list[str]) -> list[tuple[str, str]]:
    """(table, statement) for each reference to a tenant table that no workspace_id condition covers."""
    tenant = set(tenant_tables())
    missing = []
    for sql in statements:
        for keyword, table, alias in TABLE_REFERENCE.findall(sql):
            if table not in tenant:
                continue
            if keyword.upper() == "INTO":
                columns = sql.split("(", 1)[1].split(")", 1)[0] if "(" in sql else ""
                if "workspace_id" not in columns:
                    missing.append((table, sql))
                continue
            name = re.escape(alias if alias and alias.upper() not in NOT_AN_ALIAS else table)
            column = rf'(?<![\w"])"?{name}"?\."?workspace_id"?'
            if not re.search(rf"{column}\s*(=|IN\b)|=\s*{column}", sql):
                missing.append((table, sql))
    return missing


def test_the_check_itself_catches_a_query_without_workspace():
    ok = 'SELECT "chat_thread"."id" FROM "chat_thread" WHERE ("chat_thread"."workspace_id" = \'ws_a\')'
    aliased = 'SELECT 1 FROM "chat_message" U0 WHERE (U0."workspace_id" = \'ws_a\' AND U0."thread_id" = 1)'
    bad = 'SELECT "chat_attachment"."id" FROM "chat_attachment" WHERE "chat_attachment"."message_id" IN (\'m\')'
    insert = 'INSERT INTO "chat_thread" ("id", "title") VALUES (\'t\', \'x\')'
    assert tenant_statements_without_workspace([ok, aliased]) == []
    assert [table for table, _ in tenant_statements_without_workspace([bad, insert])] == [
        "chat_attachment", "chat_thread"
    ]


def wait_for_replies(workspace_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with tenant_context(workspace_id):
            if not Message.objects.for_workspace(workspace_id).filter(status=Message.Status.STREAMING).exists():
                return
        time.sleep(0.05)


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def representative_api_run(alice, service_client) -> None:
    """Threads, messages, files, documents, brand, agents and the workspace, as clients use them."""
    client = alice.client
    ok = {200, 201, 202, 204}

    def call(response):
        assert response.status_code in ok, (response.status_code, response.content[:300])
        return response.json() if response.content else None

    document = call(client.post("/api/v1/knowledge/documents", {"title": "Pricing", "body": "Pro is 49 dollars."},
                                format="json"))
    call(client.get("/api/v1/knowledge/documents?q=pricing"))
    call(client.patch(f"/api/v1/knowledge/documents/{document['id']}", {"tags": ["sales"]}, format="json"))
    call(client.get(f"/api/v1/knowledge/documents/{document['id']}"))
    call(client.put("/api/v1/knowledge/brand", {"name": "Acme", "description": "Tools", "voice": "Warm",
                                                 "facts": ["Founded 1999"]}, format="json"))
    call(client.get("/api/v1/knowledge/brand"))
    agent = call(client.post("/api/v1/agents", {"name": "Writer", "instructions": "Write well."}, format="json"))
    call(client.patch(f"/api/v1/agents/{agent['id']}", {"description": "Copy"}, format="json"))
    call(client.get("/api/v1/agents"))
    thread = call(client.post("/api/v1/chat/threads", {"title": "Launch", "agent_id": agent["id"],
                                                        "knowledge_document_ids": [document["id"]]}, format="json"))
    url = f"/api/v1/chat/threads/{thread['id']}"
    upload = SimpleUploadedFile("notes.txt", b"lead notes", content_type="text/plain")
    file = call(client.post("/api/v1/chat/files", {"file": upload}, format="multipart"))
    sent = call(client.post(f"{url}/messages", {"content": "How much is Pro?", "attachments": [
        {"type": "file", "file_id": file["id"]}, {"type": "knowledge_document", "document_id": document["id"]},
        {"type": "lead", "lead": {"name": "Ann", "company": "Globex"}},
    ]}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"))
    wait_for_replies(alice.user.memberships.first().workspace_id)
    call(client.get(f"{url}/messages"))
    call(client.get(f"{url}/messages?q=pro&order=desc"))
    call(client.get(f"{url}/messages/{sent['assistant_message']['id']}/stream", HTTP_LAST_EVENT_ID="999"))
    call(client.post(f"{url}/messages/{sent['assistant_message']['id']}/cancel"))
    call(client.get("/api/v1/chat/threads?q=launch"))
    call(client.get("/api/v1/chat/threads?pinned=false&archived=false"))
    call(client.get(url))
    call(client.patch(url, {"title": "Launch plan", "pinned": True}, format="json"))
    call(service_client.get(f"/api/v1/chat/threads?user_id={alice.id}"))
    call(client.get("/api/v1/workspace"))
    call(client.get("/api/v1/workspace/members"))
    call(client.delete(url))
    call(client.delete(f"/api/v1/agents/{agent['id']}"))
    call(client.delete(f"/api/v1/knowledge/documents/{document['id']}"))


@pytest.mark.django_db(transaction=True)  # the reply is produced on other connections: it must see the rows
def test_every_tenant_query_of_the_api_names_its_workspace(alice, service_client, media_root):
    with CaptureQueriesContext(connection) as captured:
        representative_api_run(alice, service_client)
    statements = [query["sql"] for query in captured.captured_queries]
    touched = {table for sql in statements for _, table, _ in TABLE_REFERENCE.findall(sql)}
    assert set(tenant_tables()) - {"chat_idempotencyrecord"} <= touched | {"chat_idempotencyrecord"}
    missing = tenant_statements_without_workspace(statements)
    assert not missing, "tenant queries without a workspace_id condition:\n" + "\n".join(
        f"- {table}: {sql[:400]}" for table, sql in missing
    )


def test_scaling_doc_names_every_table():
    """docs/scaling.md's table of distributed and reference tables covers every model's table, and
    calls exactly the tenant tables distributed."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "scaling.md").read_text()
    kinds = dict(re.findall(r"^\| `(\w+)` \| (distributed|reference|local) \|", doc, re.MULTILINE))
    assert set(kinds) == {model._meta.db_table for model in apps.get_models(include_auto_created=True)}
    assert {table for table, kind in kinds.items() if kind == "distributed"} == set(tenant_tables())
