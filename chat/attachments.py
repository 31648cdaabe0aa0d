"""Message attachments: resolve references to what the assistant sees, and claim attached files.

What the assistant saw is copied onto the attachment (title, excerpt, content and its SHA-256), so
history stays true when a document changes or a file goes. `content_sha256` is the SHA-256 of the
document's body at send time, of the lead as canonical JSON (sorted keys, no spaces, UTF-8), or of
the file's uploaded bytes.

A lead is a LeadSchema object: its known fields, bounded, unknown keys refused, and anything else
the client wants to carry in the free-form `extra` object (kept and hashed with the lead).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.models import Attachment, File
from knowledge.models import Document
from workspaces.errors import ReferenceNotFound
from workspaces.tenancy import Scope, unique_or_none

EXCERPT_MAX = 300
CONTENT_MAX = 20_000
TITLE_MAX = 300

# The order a lead's fields are shown to the assistant in.
LEAD_FIELD_LABELS = {
    "name": "Name",
    "title": "Title",
    "company": "Company",
    "email": "Email",
    "phone": "Phone",
    "website": "Website",
    "industry": "Industry",
    "stage": "Stage",
    "notes": "Notes",
}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def excerpt_of(text: str, limit: int = EXCERPT_MAX) -> str:
    """The start of `text` with whitespace folded, at most `limit` characters, cut on a word."""
    folded = " ".join(text.split())
    if len(folded) <= limit:
        return folded
    cut = folded[: limit - 1]
    boundary = cut.rfind(" ")
    if boundary > limit // 2:
        cut = cut[:boundary]
    return cut.rstrip() + "…"


def _document_attachment(scope: Scope, document_id: str) -> dict[str, Any]:
    document = unique_or_none(Document.objects.for_scope(scope).filter(pk=document_id))
    if document is None:
        raise ReferenceNotFound(document_id)
    return {
        "type": Attachment.Type.KNOWLEDGE_DOCUMENT,
        "document_id": document.pk,
        "title": document.title[:TITLE_MAX],
        "excerpt": excerpt_of(document.body),
        "content": document.body[:CONTENT_MAX],
        "content_sha256": sha256_text(document.body),
    }


def lead_text(lead: Mapping[str, Any]) -> str:
    """The lead as the assistant reads it: one `Label: value` line per field, then `extra` as JSON."""
    lines = [f"{label}: {lead[name]}" for name, label in LEAD_FIELD_LABELS.items() if lead.get(name)]
    if lead.get("extra"):
        lines.append("Extra: " + canonical_json(lead["extra"]))
    return "\n".join(lines)


def _lead_attachment(lead: Mapping[str, Any]) -> dict[str, Any]:
    lead = dict(lead)
    name, company = lead.get("name") or "", lead.get("company") or ""
    title = " — ".join(part for part in (name, company) if part) or lead.get("email") or "Lead"
    text = lead_text(lead)
    return {
        "type": Attachment.Type.LEAD,
        "lead": lead,
        "title": title[:TITLE_MAX],
        "excerpt": excerpt_of(text),
        "content": text[:CONTENT_MAX],
        "content_sha256": sha256_text(canonical_json(lead)),
    }


def _file_attachment(scope: Scope, file_id: str, thread_id: str | None) -> dict[str, Any]:
    # Personal keys see only their own user's files (File.scope_owner_field); a file already in
    # another thread belongs to that thread now.
    file = unique_or_none(File.objects.for_scope(scope).filter(pk=file_id))
    if file is None or (file.thread_id is not None and file.thread_id != thread_id):
        raise ReferenceNotFound(file_id)
    return {
        "type": Attachment.Type.FILE,
        "file_id": file.pk,
        "title": file.filename[:TITLE_MAX],
        "excerpt": excerpt_of(file.text),
        "content": file.text[:CONTENT_MAX],
        "content_sha256": file.sha256,
    }


def resolve_attachments(*, scope: Scope, items: list[dict], thread_id: str | None = None) -> list[dict]:
    """Attachment kwargs (for chat.models.Attachment) for validated AttachmentInputSchema items.

    Pass the thread the message goes to as `thread_id`, so a file already attached to that same
    thread can be attached again. Any reference not visible in scope raises ReferenceNotFound.
    """
    resolved = []
    for item in items:
        kind = item["type"]
        if kind == Attachment.Type.KNOWLEDGE_DOCUMENT:
            resolved.append(_document_attachment(scope, item["document_id"]))
        elif kind == Attachment.Type.LEAD:
            resolved.append(_lead_attachment(item["lead"]))
        elif kind == Attachment.Type.FILE:
            resolved.append(_file_attachment(scope, item["file_id"], thread_id))
        else:
            raise ValueError(f"unknown attachment type {kind!r}")
    return resolved


def _file_id(attachment: Mapping[str, Any] | Attachment) -> str:
    if isinstance(attachment, Attachment):
        return attachment.file_id if attachment.type == Attachment.Type.FILE else ""
    if attachment.get("type") != Attachment.Type.FILE:
        return ""
    return attachment.get("file_id") or ""


@transaction.atomic
def attach_files_to_thread(
    *, scope: Scope, thread_id: str, attachments: Iterable[Mapping[str, Any] | Attachment]
) -> int:
    """Mark the attachments' files as belonging to the thread (they then go with it); returns how many.

    The conditional update is the race guard: a file claimed by another thread in the meantime is
    not taken over, and the whole send fails with ReferenceNotFound instead.
    """
    file_ids = sorted({fid for fid in (_file_id(a) for a in attachments) if fid})
    if not file_ids:
        return 0
    claimable = File.objects.for_scope(scope).filter(pk__in=file_ids)
    claimable = claimable.filter(Q(thread__isnull=True) | Q(thread_id=thread_id))
    claimed = claimable.update(thread_id=thread_id, attached_at=Coalesce("attached_at", Value(timezone.now())))
    if claimed != len(file_ids):
        raise ReferenceNotFound("file")
    return claimed
