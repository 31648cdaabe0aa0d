"""Threads, messages, attachments, uploaded files and idempotency records. All carry workspace_id."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from workspaces import ids
from workspaces.compat import WorkspaceScopedSaves
from workspaces.models import Workspace
from workspaces.tenancy import TenantManager


class Thread(WorkspaceScopedSaves):
    id = models.CharField(primary_key=True, max_length=ids.ID_MAX_LENGTH, default=ids.new_thread_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="threads")
    title = models.CharField(max_length=200, blank=True, default="")
    # True until a person names the thread: the title then follows the first message.
    title_is_auto = models.BooleanField(default=True)
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="threads", db_constraint=True
    )
    system_prompt = models.TextField(blank=True, default="")
    knowledge_document_ids = models.JSONField(default=list, blank=True)
    # The system context this thread answers with, resolved when it was created (or refreshed):
    # agent instructions and version, brand profile and version. See agents.context.
    context = models.JSONField(default=dict, blank=True)
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    message_count = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # last_message_at, or created_at before the first message: the recency sort key, never null.
    activity_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = TenantManager()
    scope_owner_field = "user_id"

    class Meta:
        indexes = [
            models.Index(fields=["workspace", "user", "archived", "-activity_at", "-id"], name="thread_user_recency"),
            models.Index(fields=["workspace", "archived", "-activity_at", "-id"], name="thread_ws_recency"),
        ]

    def __str__(self) -> str:
        return self.title or self.id


class Message(WorkspaceScopedSaves):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        CANCELLED = "cancelled"
        FAILED = "failed"
        INTERRUPTED = "interrupted"

    id = models.CharField(primary_key=True, max_length=ids.ID_MAX_LENGTH, default=ids.new_message_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    # 1, 2, 3... within the thread: the history order, immune to equal timestamps.
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    tool_calls = models.JSONField(default=list, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Stream bookkeeping (assistant messages): the producer's lease and the last event number.
    last_seq = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    producer = models.CharField(max_length=128, blank=True, default="")

    objects = TenantManager()
    scope_owner_field = "thread__user_id"

    class Meta:
        constraints = [models.UniqueConstraint(fields=["thread", "position"], name="message_thread_position")]
        indexes = [
            models.Index(fields=["workspace", "status", "lease_expires_at"], name="message_streaming_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.id}"

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.STREAMING


class File(WorkspaceScopedSaves):
    """An upload; belongs to its user until attached, then goes with its thread."""

    id = models.CharField(primary_key=True, max_length=ids.ID_MAX_LENGTH, default=ids.new_file_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, null=True, blank=True, related_name="files")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    blob = models.FileField(upload_to="uploads/%Y/%m/%d/", max_length=255)
    text = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    attached_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager()
    scope_owner_field = "user_id"

    class Meta:
        indexes = [models.Index(fields=["workspace", "attached_at", "created_at"], name="file_unattached")]

    def __str__(self) -> str:
        return self.filename


class Attachment(WorkspaceScopedSaves):
    class Type(models.TextChoices):
        KNOWLEDGE_DOCUMENT = "knowledge_document"
        LEAD = "lead"
        FILE = "file"

    id = models.CharField(primary_key=True, max_length=ids.ID_MAX_LENGTH, default=ids.new_attachment_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    position = models.PositiveSmallIntegerField(default=0)
    type = models.CharField(max_length=32, choices=Type.choices)
    # References are kept as plain ids: history stays readable after the source is deleted.
    document_id = models.CharField(max_length=ids.ID_MAX_LENGTH, blank=True, default="")
    file_id = models.CharField(max_length=ids.ID_MAX_LENGTH, blank=True, default="")
    lead = models.JSONField(null=True, blank=True)
    title = models.CharField(max_length=300, blank=True, default="")
    excerpt = models.TextField(blank=True, default="")
    # The text the assistant saw, as it was at send time.
    content = models.TextField(blank=True, default="")
    content_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = TenantManager()
    scope_owner_field = "message__thread__user_id"

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class IdempotencyRecord(WorkspaceScopedSaves):
    """One `Idempotency-Key` use, scoped to the key's workspace and acting user, kept 24 h."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    # The acting user id, or the service key's id when it acts for nobody in particular.
    principal = models.CharField(max_length=ids.ID_MAX_LENGTH)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()

    objects = TenantManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "principal", "key"], name="idempotency_unique_key"),
        ]
