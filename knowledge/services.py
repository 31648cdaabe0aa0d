"""Every write to documents and the brand profile. Keyword-only, atomic."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from knowledge.models import BrandProfile, BrandProfileVersion, Document, Passage
from knowledge.search import split_passages
from workspaces.tenancy import Scope, lock_or_not_found

DOCUMENT_FIELDS = ("title", "body", "source_url", "tags")
BRAND_FIELDS = ("name", "description", "voice", "facts")


def _passages_rebuild(document: Document) -> None:
    Passage.objects.for_workspace(document.workspace_id).filter(document=document).delete()
    Passage.objects.bulk_create(
        Passage(
            workspace_id=document.workspace_id,
            document=document,
            index=index,
            document_title=document.title,
            text=text,
        )
        for index, text in enumerate(split_passages(document.body))
    )


@transaction.atomic
def document_create(
    *, scope: Scope, title: str, body: str, source_url: str = "", tags: list[str] | None = None
) -> Document:
    now = timezone.now()
    document = Document.objects.create(
        workspace_id=scope.workspace_id,
        title=title,
        body=body,
        source_url=source_url,
        tags=list(tags or []),
        created_at=now,
        updated_at=now,
    )
    _passages_rebuild(document)
    return document


@transaction.atomic
def document_update(*, scope: Scope, document: Document, changes: dict[str, Any]) -> Document:
    """Apply the given fields; passages are rebuilt when the title or body changes."""
    document = lock_or_not_found(Document.objects.for_scope(scope), document.pk)  # deleted meanwhile: 404
    changed = [name for name in DOCUMENT_FIELDS if name in changes and getattr(document, name) != changes[name]]
    if not changed:
        return document
    for name in changed:
        setattr(document, name, changes[name])
    document.updated_at = timezone.now()
    document.save(update_fields=[*changed, "updated_at"])
    if {"title", "body"} & set(changed):
        _passages_rebuild(document)
    return document


@transaction.atomic
def document_delete(*, scope: Scope, document: Document) -> None:
    """Delete a document and its passages. Threads and attachments keep their copies of its ids."""
    # Locked before its passages are collected, so an update rebuilding them is never cut in half.
    lock_or_not_found(Document.objects.for_scope(scope), document.pk)
    Document.objects.for_scope(scope).filter(pk=document.pk).delete()


@transaction.atomic
def brand_profile_update(*, scope: Scope, changes: dict[str, Any], replace: bool) -> BrandProfile:
    """Change the brand profile; the version rises (and is kept) only when something changed.

    `replace=True` is PUT: fields left out are reset to empty. The row lock serialises concurrent
    writers so each version number is used once.
    """
    profiles = BrandProfile.objects.for_scope(scope)
    profiles.get_or_create(workspace_id=scope.workspace_id, defaults={"version": 0})
    profile = profiles.select_for_update().get()
    wanted = {name: changes.get(name, [] if name == "facts" else "") for name in BRAND_FIELDS} if replace else changes
    changed = [name for name in BRAND_FIELDS if name in wanted and getattr(profile, name) != wanted[name]]
    if not changed and profile.version > 0:
        return profile
    for name in changed:
        setattr(profile, name, wanted[name])
    profile.version += 1
    profile.updated_at = timezone.now()
    profile.save()
    BrandProfileVersion.objects.create(
        workspace_id=scope.workspace_id,
        version=profile.version,
        name=profile.name,
        description=profile.description,
        voice=profile.voice,
        facts=profile.facts,
        created_at=profile.updated_at,
    )
    return profile
