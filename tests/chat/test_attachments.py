"""Attachments: what the assistant saw, its SHA-256, and references that are not yours."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chat import services
from chat.attachments import attach_files_to_thread, resolve_attachments
from chat.files import file_upload
from chat.models import File
from chat.schemas import MessageCreateSchema, message_data
from tests.factories import ThreadFactory
from tests.helpers import assert_written_as_declared
from tests.knowledge.factories import DocumentFactory
from workspaces.errors import ReferenceNotFound, _flatten_fields
from workspaces.tenancy import Scope, tenant_context

pytestmark = pytest.mark.django_db

LEAD = {
    "name": "Ann Lee",
    "company": "Initech",
    "email": "ann@initech.test",
    "notes": "  Wants a demo — Tuesday ☕ ",
    "extra": {"crm_id": 42, "tags": ["hot", "q4"]},
}


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def scope_of(member, workspace) -> Scope:
    return Scope(workspace_id=workspace.pk, user_id=member.id)


def service_scope(workspace) -> Scope:
    return Scope(workspace_id=workspace.pk, user_id=None, is_service=True)


def validated(items: list[dict]) -> list[dict]:
    body = MessageCreateSchema(data={"content": "hi", "attachments": items})
    body.is_valid(raise_exception=True)
    return body.validated_data["attachments"]


def resolve(scope, items, **kwargs):
    with tenant_context(scope.workspace_id):
        return resolve_attachments(scope=scope, items=validated(items), **kwargs)


def upload_as(member, workspace, data=b"Renewal terms: 12 months.", name="terms.txt") -> File:
    scope = scope_of(member, workspace)
    with tenant_context(workspace.pk):
        return file_upload(scope=scope, user_id=member.id, upload=SimpleUploadedFile(name, data, "text/plain"))


def test_a_document_attachment_carries_the_body_it_was_sent_with(alice, workspace):
    body = "Refunds are issued within 30 days. " * 40
    document = DocumentFactory(workspace=workspace, title="Refund policy", body=body)
    [attachment] = resolve(scope_of(alice, workspace), [{"type": "knowledge_document", "document_id": document.pk}])
    assert attachment["type"] == "knowledge_document" and attachment["document_id"] == document.pk
    assert attachment["title"] == "Refund policy"
    assert attachment["content"] == body
    assert attachment["content_sha256"] == hashlib.sha256(body.encode("utf-8")).hexdigest()
    assert len(attachment["excerpt"]) <= 300 and attachment["excerpt"].startswith("Refunds are issued")


def test_long_documents_are_bounded_but_hashed_whole(alice, workspace):
    body = "word " * 10_000
    document = DocumentFactory(workspace=workspace, body=body)
    [attachment] = resolve(scope_of(alice, workspace), [{"type": "knowledge_document", "document_id": document.pk}])
    assert len(attachment["content"]) == 20_000
    assert attachment["content_sha256"] == hashlib.sha256(body.encode()).hexdigest()


def test_a_lead_is_hashed_as_canonical_json_and_keeps_extra(alice, workspace):
    [attachment] = resolve(scope_of(alice, workspace), [{"type": "lead", "lead": LEAD}])
    assert attachment["lead"] == LEAD  # exactly as sent, extra object included
    canonical = json.dumps(LEAD, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert attachment["content_sha256"] == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert attachment["title"] == "Ann Lee — Initech"
    assert "Company: Initech" in attachment["content"] and '"crm_id":42' in attachment["content"]


@pytest.mark.parametrize(
    "lead,field",
    [
        ({"name": "Ann", "budget": 10}, "attachments.0.lead.budget"),
        ({"email": "not an email"}, "attachments.0.lead.email"),
        ({"notes": "x" * 10_001}, "attachments.0.lead.notes"),
        ({"extra": {"k": "v" * 9000}}, "attachments.0.lead.extra"),
        ({"name": "a\x00"}, "attachments.0.lead.name"),
    ],
)
def test_leads_with_unknown_keys_or_oversized_fields_are_refused(lead, field):
    body = MessageCreateSchema(data={"content": "hi", "attachments": [{"type": "lead", "lead": lead}]})
    assert not body.is_valid()
    assert field in _flatten_fields(body.errors)  # the field names the API's 400 would carry


def test_a_file_attachment_is_hashed_from_its_uploaded_bytes(alice, workspace):
    data = "Renewal terms: 12 months — ☕\n".encode()
    file = upload_as(alice, workspace, data)
    [attachment] = resolve(scope_of(alice, workspace), [{"type": "file", "file_id": file.pk}])
    assert attachment["file_id"] == file.pk and attachment["title"] == "terms.txt"
    assert attachment["content"] == data.decode()
    assert attachment["content_sha256"] == hashlib.sha256(data).hexdigest()


def test_references_of_another_workspace_are_not_found(alice, workspace, outsider, other_workspace):
    theirs = DocumentFactory(workspace=other_workspace, body="Globex secrets")
    their_file = upload_as(outsider, other_workspace)
    for item in ({"type": "knowledge_document", "document_id": theirs.pk}, {"type": "file", "file_id": their_file.pk}):
        with pytest.raises(ReferenceNotFound):
            resolve(scope_of(alice, workspace), [item])
        with pytest.raises(ReferenceNotFound):
            resolve(service_scope(workspace), [item])


def test_missing_references_are_not_found(alice, workspace):
    for item in (
        {"type": "knowledge_document", "document_id": "doc_missing0000000000000"},
        {"type": "file", "file_id": "file_missing000000000000"},
    ):
        with pytest.raises(ReferenceNotFound):
            resolve(scope_of(alice, workspace), [item])


def test_a_personal_key_attaches_only_its_own_users_files(alice, bob, workspace):
    bobs = upload_as(bob, workspace)
    with pytest.raises(ReferenceNotFound):
        resolve(scope_of(alice, workspace), [{"type": "file", "file_id": bobs.pk}])
    assert resolve(scope_of(bob, workspace), [{"type": "file", "file_id": bobs.pk}])[0]["file_id"] == bobs.pk
    # A service key acts for the whole workspace.
    assert resolve(service_scope(workspace), [{"type": "file", "file_id": bobs.pk}])[0]["file_id"] == bobs.pk


def test_a_file_goes_with_the_first_thread_it_is_attached_to(alice, workspace):
    file = upload_as(alice, workspace)
    first = ThreadFactory(workspace=workspace, user=alice.user)
    second = ThreadFactory(workspace=workspace, user=alice.user)
    scope = scope_of(alice, workspace)
    items = [{"type": "file", "file_id": file.pk}]
    resolved = resolve(scope, items, thread_id=first.pk)
    with tenant_context(workspace.pk):
        assert attach_files_to_thread(scope=scope, thread_id=first.pk, attachments=resolved) == 1
        claimed = File.objects.for_scope(scope).get(pk=file.pk)
    assert claimed.thread_id == first.pk and claimed.attached_at is not None
    assert resolve(scope, items, thread_id=first.pk)[0]["file_id"] == file.pk  # again, same thread
    for thread_id in (second.pk, None):
        with pytest.raises(ReferenceNotFound):
            resolve(scope, items, thread_id=thread_id)
    with tenant_context(workspace.pk), pytest.raises(ReferenceNotFound):
        attach_files_to_thread(scope=scope, thread_id=second.pk, attachments=resolved)
    with tenant_context(workspace.pk):
        assert File.objects.for_scope(scope).get(pk=file.pk).thread_id == first.pk


def test_attachments_read_back_on_the_message_and_stay_true_after_edits(alice, workspace):
    document = DocumentFactory(workspace=workspace, title="Pricing", body="Pro costs 20 dollars.")
    file = upload_as(alice, workspace)
    thread = ThreadFactory(workspace=workspace, user=alice.user)
    scope = scope_of(alice, workspace)
    items = [
        {"type": "knowledge_document", "document_id": document.pk},
        {"type": "lead", "lead": LEAD},
        {"type": "file", "file_id": file.pk},
    ]
    resolved = resolve(scope, items, thread_id=thread.pk)
    with tenant_context(workspace.pk):
        message = services.message_append(scope=scope, thread=thread, role="user", content="see attached",
                                          attachments=resolved)
        attach_files_to_thread(scope=scope, thread_id=thread.pk, attachments=message.attachments.all())
    alice.client.patch(f"/api/v1/knowledge/documents/{document.pk}", {"body": "Pro costs 30 dollars."}, format="json")
    with tenant_context(workspace.pk):
        data = message_data(message)
    kinds = [(a["type"], a.get("document_id") or a.get("file_id") or a["lead"]["name"]) for a in data["attachments"]]
    assert kinds == [("knowledge_document", document.pk), ("lead", "Ann Lee"), ("file", file.pk)]
    assert all(a["id"].startswith("att_") for a in data["attachments"])
    assert data["attachments"][0]["content_sha256"] == hashlib.sha256(b"Pro costs 20 dollars.").hexdigest()
    assert data["attachments"][0]["excerpt"] == "Pro costs 20 dollars."
    assert data["attachments"][1]["lead"] == LEAD



def test_the_message_object_is_what_its_schema_declares(alice, workspace):
    """`message_data` writes the message object by hand (fast); DRF's own rendering of the declared
    fields must give the same JSON, for every kind of message."""
    from datetime import UTC, datetime

    from chat.models import Message
    from chat.schemas import MessageSchema
    from tests.factories import MessageFactory

    document = DocumentFactory(workspace=workspace, title="Pricing", body="Pro costs 20 dollars.")
    file = upload_as(alice, workspace)
    thread = ThreadFactory(workspace=workspace, user=alice.user)
    scope = scope_of(alice, workspace)
    resolved = resolve(
        scope,
        [{"type": "knowledge_document", "document_id": document.pk}, {"type": "lead", "lead": LEAD},
         {"type": "file", "file_id": file.pk}],
        thread_id=thread.pk,
    )
    with tenant_context(workspace.pk):
        messages = [
            services.message_append(scope=scope, thread=thread, role="user", content="  see ☕ attached\n",
                                    attachments=resolved),
            MessageFactory(
                thread=thread, position=2, role=Message.Role.ASSISTANT, status=Message.Status.FAILED, content="partial",
                tool_calls=[{"id": "call_1", "name": "search_knowledge", "arguments": {"query": "é"},
                             "result": {"results": [1, None]}, "status": "complete"}],
                usage={"input_tokens": 12, "output_tokens": 3},
                error={"code": "provider_error", "message": "The provider failed."},
                created_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            ),
            MessageFactory(thread=thread, position=3, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING,
                           completed_at=None, usage={}),
        ]
        for message in messages:
            message = Message.objects.for_workspace(workspace.pk).get(pk=message.pk)
            assert_written_as_declared(MessageSchema(), message_data(message), message)
        assert len(message_data(messages[0])["attachments"]) == 3
