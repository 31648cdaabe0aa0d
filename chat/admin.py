"""Read-only admin of chat history for support staff, one workspace at a time (see workspaces.admin)."""

from __future__ import annotations

from django.contrib import admin

from chat.models import Attachment, File, IdempotencyRecord, Message, Thread
from workspaces.admin import ReadOnlyAdminMixin, TenantModelAdmin

PREVIEW_CHARS = 200


@admin.display(description="content")
def content_preview(message: Message) -> str:
    text = message.content
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}…"


class MessageInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The thread's history in position order; read-only (messages change only through the API)."""

    model = Message
    extra = 0
    ordering = ("position",)
    show_change_link = True
    fields = readonly_fields = ("position", "role", "status", content_preview, "created_at", "completed_at")


@admin.register(Thread)
class ThreadAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("id", "title", "user_email", "pinned", "archived", "message_count", "activity_at")
    list_filter = ("pinned", "archived", ("agent", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user",)
    search_fields = ("title", "=id", "user__email")
    ordering = ("-activity_at", "-id")
    inlines = (MessageInline,)

    @admin.display(description="user", ordering="user__email")
    def user_email(self, thread: Thread) -> str:
        return thread.user.email


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("id", "thread", "position", "role", "status", content_preview, "created_at")
    list_filter = ("role", "status")
    list_select_related = ("thread",)
    search_fields = ("=id", "content")
    ordering = ("-created_at", "-id")


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("id", "type", "title", "message", "created_at")
    list_filter = ("type",)
    search_fields = ("=id", "title", "=document_id", "=file_id")
    ordering = ("-created_at", "-id")


@admin.register(File)
class FileAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("id", "filename", "content_type", "size", "user", "thread", "created_at", "attached_at")
    list_select_related = ("user", "thread")
    search_fields = ("=id", "filename", "user__email")
    ordering = ("-created_at", "-id")
    # The stored blob is not linked: media is not served to the admin.
    exclude = ("blob",)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("key", "principal", "thread", "created_at", "expires_at")
    search_fields = ("=key", "=principal")
    ordering = ("-created_at", "-id")
