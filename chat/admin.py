"""Read-only admin of chat history for support staff (see workspaces.admin): a thread's page shows
its conversation as people had it, with tool calls and token usage; a workspace's page its activity
over the last 30 days. Opening a conversation is recorded (workspaces.models.ConversationRead)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, TruncDate
from django.template.loader import render_to_string
from django.utils import timezone

from chat.models import Attachment, File, IdempotencyRecord, Message, Thread
from workspaces.admin import ReadOnlyAdminMixin, RecordsConversationReads, TenantModelAdmin, WorkspaceAdmin
from workspaces.models import Workspace
from workspaces.tenancy import tenant_context

PREVIEW_CHARS = 200
SUMMARY_CHARS = 400  # a tool call's arguments or result beyond this is cut, with the full size said
ACTIVITY_DAYS = 30


@admin.display(description="content")
def content_preview(message: Message) -> str:
    text = message.content
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}…"


def summarized(value: Any) -> str:
    """JSON of a tool call's arguments or result, cut to SUMMARY_CHARS with the full length said."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) <= SUMMARY_CHARS:
        return text
    return f"{text[:SUMMARY_CHARS]}… ({len(text):,} characters in all)"


def tokens(usage: dict | None) -> tuple[int, int]:
    usage = usage or {}
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


def conversation_html(messages: list[Message]) -> str:
    """A thread's messages as support reads them: role, time, status, text, tool calls, usage."""
    turns = []
    total_in = total_out = 0
    for message in messages:
        tokens_in, tokens_out = tokens(message.usage)
        total_in, total_out = total_in + tokens_in, total_out + tokens_out
        calls = [
            {"name": call.get("name", ""), "status": call.get("status", ""),
             "arguments": summarized(call.get("arguments")), "result": summarized(call.get("result"))}
            for call in message.tool_calls or []
        ]
        turns.append({"message": message, "calls": calls, "tokens_in": tokens_in, "tokens_out": tokens_out})
    return render_to_string(
        "admin/chat/conversation.html", {"turns": turns, "total_in": total_in, "total_out": total_out}
    )


@admin.register(Thread)
class ThreadAdmin(RecordsConversationReads, ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("id", "title", "user_email", "pinned", "archived", "message_count", "activity_at")
    list_filter = ("pinned", "archived", ("agent", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user",)
    search_fields = ("title", "=id", "user__email")
    ordering = ("-activity_at", "-id")
    fieldsets = (
        (None, {"fields": ("id", "workspace", "user", "title", "agent", "pinned", "archived", "message_count",
                           "created_at", "activity_at")}),
        ("Conversation", {"fields": ("conversation",)}),
        ("Set-up", {"fields": ("system_prompt", "knowledge_document_ids", "context", "metadata"),
                    "classes": ("collapse",)}),
    )
    readonly_fields = ("conversation",)

    @admin.display(description="user", ordering="user__email")
    def user_email(self, thread: Thread) -> str:
        return thread.user.email

    @admin.display(description="messages")
    def conversation(self, thread: Thread) -> str:
        return conversation_html(list(thread.messages.order_by("position")))

    def conversation_of(self, thread: Thread) -> tuple[str, str]:
        return thread.pk, thread.title


@admin.register(Message)
class MessageAdmin(RecordsConversationReads, ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("id", "thread", "position", "role", "status", content_preview, "created_at")
    list_filter = ("role", "status")
    list_select_related = ("thread",)
    search_fields = ("=id", "content")
    ordering = ("-created_at", "-id")

    def conversation_of(self, message: Message) -> tuple[str, str]:
        return message.thread_id, message.thread.title


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


def daily_activity(workspace: Workspace, days: int = ACTIVITY_DAYS) -> list[dict[str, Any]]:
    """Threads started, messages and tokens per day (UTC) over the last `days` days, oldest first."""
    today = timezone.now().date()
    since = today - timedelta(days=days - 1)
    start = datetime.combine(since, time.min, tzinfo=UTC)
    with tenant_context(workspace.pk):
        threads = dict(
            Thread.objects.for_workspace(workspace.pk).filter(created_at__gte=start)
            .annotate(day=TruncDate("created_at")).values("day").annotate(n=Count("id")).values_list("day", "n")
        )
        messages = {
            row["day"]: row
            for row in Message.objects.for_workspace(workspace.pk).filter(created_at__gte=start)
            .annotate(day=TruncDate("created_at")).values("day")
            .annotate(
                n=Count("id"),
                tokens_in=Sum(Cast(KeyTextTransform("input_tokens", "usage"), IntegerField())),
                tokens_out=Sum(Cast(KeyTextTransform("output_tokens", "usage"), IntegerField())),
            )
        }
    rows = []
    for offset in range(days):
        day = since + timedelta(days=offset)
        row = messages.get(day, {})
        rows.append({
            "day": day, "threads": threads.get(day, 0), "messages": row.get("n", 0),
            "tokens": (row.get("tokens_in") or 0) + (row.get("tokens_out") or 0),
        })
    return rows


class ChatWorkspaceAdmin(WorkspaceAdmin):
    """The workspace page, with its chat activity per day."""

    readonly_fields = (*WorkspaceAdmin.readonly_fields, "activity")
    fields = (*WorkspaceAdmin.fields, "activity")

    @admin.display(description=f"Activity, last {ACTIVITY_DAYS} days (UTC)")
    def activity(self, workspace: Workspace) -> str:
        if workspace.pk is None:
            return "-"
        rows = daily_activity(workspace)
        return render_to_string("admin/chat/activity.html", {
            "rows": list(reversed(rows)),
            "max_messages": max([r["messages"] for r in rows] + [1]),
            "max_tokens": max([r["tokens"] for r in rows] + [1]),
            "totals": {key: sum(r[key] for r in rows) for key in ("threads", "messages", "tokens")},
        })


admin.site.unregister(Workspace)
admin.site.register(Workspace, ChatWorkspaceAdmin)
