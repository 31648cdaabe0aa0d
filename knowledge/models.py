"""Brand profile (versioned) and knowledge documents, split into passages for search.

On PostgreSQL, `knowledge_passage` also has a `search_vector` tsvector column that the database
generates from `document_title` and `text`, with a GIN index (migration 0004). It is not a model
field: the ORM never writes it, and knowledge.search reads it through SQL expressions.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from workspaces import ids
from workspaces.compat import WorkspaceScopedSaves
from workspaces.models import Workspace
from workspaces.tenancy import TenantManager


class Document(WorkspaceScopedSaves):
    id = models.CharField(primary_key=True, max_length=ids.ID_MAX_LENGTH, default=ids.new_document_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=300)
    body = models.TextField()
    source_url = models.URLField(max_length=2000, blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = TenantManager()

    class Meta:
        indexes = [models.Index(fields=["workspace", "-created_at", "-id"], name="document_recency")]

    def __str__(self) -> str:
        return self.title


class Passage(WorkspaceScopedSaves):
    """A paragraph-sized slice of a document's body: the unit search ranks and tools quote.

    Rebuilt whenever the document's title or body changes; `document_title` is copied here so the
    generated search vector can weigh the title without a join.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="passages")
    index = models.PositiveIntegerField()
    document_title = models.CharField(max_length=300, blank=True, default="")
    text = models.TextField()

    objects = TenantManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["document", "index"], name="passage_document_index")]

    def __str__(self) -> str:
        return f"{self.document_id} #{self.index}"


class BrandProfile(WorkspaceScopedSaves):
    """The workspace's brand profile; `version` rises on every change (see BrandProfileVersion)."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200, blank=True, default="")
    description = models.TextField(blank=True, default="")
    voice = models.TextField(blank=True, default="")
    facts = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = TenantManager()

    def __str__(self) -> str:
        return self.name or f"brand of {self.workspace_id}"


class BrandProfileVersion(WorkspaceScopedSaves):
    """A frozen copy of the brand profile at `version` (the current one included), never edited."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200, blank=True, default="")
    description = models.TextField(blank=True, default="")
    voice = models.TextField(blank=True, default="")
    facts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = TenantManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "version"], name="brandversion_workspace_version")]
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"brand v{self.version} of {self.workspace_id}"
