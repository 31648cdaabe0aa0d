"""Schemas of the chat API: request bodies (strict) and the thread, message and file objects."""

from __future__ import annotations

import json
from datetime import UTC

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from chat.models import Attachment, File, Message, Thread
from workspaces.compat import prefetched
from workspaces.schemas import (
    BoundedJSONField,
    ExactCharField,
    IdField,
    StrictBooleanField,
    StrictSerializer,
    email_field,
    http_url_field,
)

TITLE_MAX = 200
SYSTEM_PROMPT_MAX = 32_000
CONTENT_MAX = 100_000
MAX_DOCUMENT_REFERENCES = 50
MAX_ATTACHMENTS = 20


# --- requests ---------------------------------------------------------------------------------
class ThreadCreateSchema(StrictSerializer):
    title = ExactCharField(required=False, allow_blank=True, max_length=TITLE_MAX)
    system_prompt = ExactCharField(required=False, allow_blank=True, max_length=SYSTEM_PROMPT_MAX)
    agent_id = IdField(prefix="agt", required=False, allow_null=True)
    knowledge_document_ids = serializers.ListField(
        child=IdField(prefix="doc"), required=False, max_length=MAX_DOCUMENT_REFERENCES
    )
    metadata = BoundedJSONField(kind=dict, required=False)
    user_id = ExactCharField(required=False, max_length=64)


class ThreadUpdateSchema(StrictSerializer):
    title = ExactCharField(required=False, allow_blank=False, max_length=TITLE_MAX)
    pinned = StrictBooleanField(required=False)
    archived = StrictBooleanField(required=False)
    system_prompt = ExactCharField(required=False, allow_blank=True, max_length=SYSTEM_PROMPT_MAX)
    metadata = BoundedJSONField(kind=dict, required=False)
    refresh_context = StrictBooleanField(
        required=False,
        help_text=(
            "true re-reads the bound agent's latest version and the current brand profile into the "
            "thread's context snapshot. Without it, later edits never change an existing thread."
        ),
    )


class LeadSchema(StrictSerializer):
    """A lead: known fields only (unknown keys are a 400); anything else goes in the free-form `extra`
    object (at most 8 KB), which is kept, shown to the assistant and included in the content hash."""

    name = ExactCharField(required=False, allow_blank=True, max_length=200)
    company = ExactCharField(required=False, allow_blank=True, max_length=200)
    email = email_field(required=False, allow_blank=True, max_length=254)
    title = ExactCharField(required=False, allow_blank=True, max_length=200)
    phone = ExactCharField(required=False, allow_blank=True, max_length=50)
    website = http_url_field(required=False, allow_blank=True, max_length=2000)
    industry = ExactCharField(required=False, allow_blank=True, max_length=200)
    stage = ExactCharField(required=False, allow_blank=True, max_length=100)
    notes = ExactCharField(required=False, allow_blank=True, max_length=10_000)
    extra = BoundedJSONField(kind=dict, required=False, max_bytes=8_192)


class AttachmentInputSchema(StrictSerializer):
    type = serializers.ChoiceField(choices=Attachment.Type.choices)
    document_id = IdField(prefix="doc", required=False)
    file_id = IdField(prefix="file", required=False)
    lead = LeadSchema(required=False)

    def validate(self, attrs):
        needed = {"knowledge_document": "document_id", "lead": "lead", "file": "file_id"}[attrs["type"]]
        if needed not in attrs:
            raise serializers.ValidationError({needed: [f"Required for a {attrs['type']} attachment."]})
        extra = {"document_id", "file_id", "lead"} - {needed}
        present = sorted(name for name in extra if name in attrs)
        if present:
            raise serializers.ValidationError(
                {name: [f"Not allowed on a {attrs['type']} attachment."] for name in present}
            )
        return attrs


class MessageCreateSchema(StrictSerializer):
    content = ExactCharField(allow_blank=False, max_length=CONTENT_MAX)
    attachments = serializers.ListField(child=AttachmentInputSchema(), required=False, max_length=MAX_ATTACHMENTS)


# --- responses --------------------------------------------------------------------------------
class ThreadSchema(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    user_id = serializers.CharField()
    agent_id = serializers.CharField(allow_null=True)
    context = serializers.JSONField(
        help_text="The system context snapshot this thread answers with (agent version, brand version)."
    )

    class Meta:
        model = Thread
        fields = [
            "id", "object", "title", "user_id", "agent_id", "system_prompt", "knowledge_document_ids",
            "pinned", "archived", "message_count", "created_at", "updated_at", "last_message_at",
            "metadata", "context",
        ]
        read_only_fields = fields

    def get_object(self, thread) -> str:
        return "thread"

    def to_representation(self, thread):
        # As MessageSchema: `thread_data` writes what the fields above declare, without building them.
        return thread_data(thread)


class SearchHitSchema(serializers.Serializer):
    """Why a search result matched: present only on the results of a `q=` search."""

    rank = serializers.FloatField(help_text="Higher is a better match; compare within one result list only.")
    snippet = serializers.CharField(help_text="A few words of the matching text, as plain text.")
    highlights = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField(), min_length=2, max_length=2),
        help_text="[start, end) offsets, in Unicode code points, of the matched words in `snippet`.",
    )
    message_id = serializers.CharField(
        allow_null=True,
        help_text="The message the snippet comes from (for a thread: its best match); null when it is the title.",
    )


class ThreadSearchResultSchema(ThreadSchema):
    search = SearchHitSchema(required=False, help_text="Only on the results of a `q=` search.")

    class Meta(ThreadSchema.Meta):
        fields = [*ThreadSchema.Meta.fields, "search"]
        read_only_fields = fields


class AttachmentSchema(serializers.ModelSerializer):
    class Meta:
        model = Attachment
        fields = ["id", "type", "title", "excerpt", "content_sha256"]

    def to_representation(self, attachment):
        data = super().to_representation(attachment)
        if attachment.type == Attachment.Type.KNOWLEDGE_DOCUMENT:
            data["document_id"] = attachment.document_id
        elif attachment.type == Attachment.Type.FILE:
            data["file_id"] = attachment.file_id
        else:
            data["lead"] = attachment.lead
        return data


class ToolCallSchema(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    arguments = serializers.JSONField()
    result = serializers.JSONField(allow_null=True)
    status = serializers.ChoiceField(choices=["running", "complete", "failed"])


class UsageSchema(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()


class ErrorInfoSchema(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class MessageSchema(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    thread_id = serializers.CharField()
    attachments = serializers.SerializerMethodField()
    tool_calls = ToolCallSchema(many=True)
    usage = serializers.SerializerMethodField()
    error = ErrorInfoSchema(allow_null=True)
    search = SearchHitSchema(required=False, help_text="Only on the results of a `q=` search of a thread's messages.")

    class Meta:
        model = Message
        fields = [
            "id", "object", "thread_id", "role", "content", "status", "attachments", "tool_calls",
            "usage", "error", "created_at", "completed_at", "search",
        ]
        read_only_fields = fields

    def get_object(self, message) -> str:
        return "message"

    @extend_schema_field(AttachmentSchema(many=True))
    def get_attachments(self, message):
        return AttachmentSchema(attachments_of(message), many=True).data

    @extend_schema_field(UsageSchema)
    def get_usage(self, message):
        return usage_data(message.usage)

    def to_representation(self, message):
        # The fields above document the shape; `message_data` writes the same dict without
        # building them (DRF builds a ModelSerializer's fields anew for every instance).
        return message_data(message)


class FileSchema(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()

    class Meta:
        model = File
        fields = ["id", "object", "filename", "content_type", "size", "created_at"]
        read_only_fields = fields

    def get_object(self, file) -> str:
        return "file"


class SendAcceptedSchema(serializers.Serializer):
    user_message = MessageSchema()
    assistant_message = MessageSchema()
    stream_url = serializers.URLField()


_ISO_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"  # the DATETIME_FORMAT of tenex.settings
_DATETIME = serializers.DateTimeField()  # unbound: formats by the DATETIME_FORMAT setting, as the schemas do


def _datetime(value) -> str | None:
    """`value` as the schemas' DateTimeField writes it: the API's timestamps are always UTC (no request
    activates another time zone), so an aware value in UTC skips DRF's per-value time zone lookup."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        written = api_settings.DATETIME_FORMAT
        if written == _ISO_UTC and value.year >= 1000:
            # What strftime writes with that format (its years are not padded below 1000), at a
            # fraction of strftime's cost: a page of threads holds dozens of timestamps.
            return value.isoformat(timespec="microseconds")[:-6] + "Z"
        if isinstance(written, str) and "%" in written:
            return value.strftime(written)
    return _DATETIME.to_representation(value)


def _text(value) -> str | None:
    return None if value is None else str(value)


def usage_data(usage: dict | None) -> dict:
    """Token usage as the API shows it: both counts, integers, 0 when unknown."""
    usage = usage or {}
    return {"input_tokens": int(usage.get("input_tokens", 0)), "output_tokens": int(usage.get("output_tokens", 0))}


def _tool_call(call: dict) -> dict:
    return {
        "id": _text(call["id"]),
        "name": _text(call["name"]),
        "arguments": call["arguments"],
        "result": call["result"],
        "status": call["status"],
    }


def attachments_of(message: Message):
    """The message's attachments: prefetched ones, or a query that names the workspace."""
    found = prefetched(message, "attachments")
    if found is not None:
        return found
    return Attachment.objects.for_workspace(message.workspace_id).filter(message=message)


def message_data(message: Message) -> dict:
    """The message object of the API: what `MessageSchema` declares, field for field (tested)."""
    error = message.error
    attachments = attachments_of(message)
    return {
        "id": _text(message.pk),
        "object": "message",
        "thread_id": _text(message.thread_id),
        "role": message.role,
        "content": _text(message.content),
        "status": message.status,
        "attachments": AttachmentSchema(attachments, many=True).data if attachments else [],
        "tool_calls": [_tool_call(call) for call in message.tool_calls],
        "usage": usage_data(message.usage),
        "error": None if error is None else {"code": _text(error["code"]), "message": _text(error["message"])},
        "created_at": _datetime(message.created_at),
        "completed_at": _datetime(message.completed_at),
    }


def thread_data(thread: Thread) -> dict:
    """The thread object of the API: what `ThreadSchema` declares, field for field (tested)."""
    return {
        "id": _text(thread.pk),
        "object": "thread",
        "title": _text(thread.title),
        "user_id": _text(thread.user_id),
        "agent_id": _text(thread.agent_id),
        "system_prompt": _text(thread.system_prompt),
        "knowledge_document_ids": thread.knowledge_document_ids,
        "pinned": bool(thread.pinned),
        "archived": bool(thread.archived),
        "message_count": int(thread.message_count),
        "created_at": _datetime(thread.created_at),
        "updated_at": _datetime(thread.updated_at),
        "last_message_at": _datetime(thread.last_message_at),
        "metadata": thread.metadata,
        "context": thread.context,
    }


def thread_row_data(row) -> dict:
    """`thread_data` of a row of `chat.selectors.thread_search_rows` (timestamps written by PostgreSQL in
    the API's format; jsonb arrives as text on Django's connection, as JSONField reads it)."""
    (pk, title, user_id, agent_id, system_prompt, documents, pinned, archived, count, created, updated, last,
     metadata, context) = row[:14]
    return {
        "id": pk,
        "object": "thread",
        "title": title,
        "user_id": user_id,
        "agent_id": agent_id,
        "system_prompt": system_prompt,
        "knowledge_document_ids": json.loads(documents),
        "pinned": pinned,
        "archived": archived,
        "message_count": count,
        "created_at": created,
        "updated_at": updated,
        "last_message_at": last,
        "metadata": json.loads(metadata),
        "context": json.loads(context),
    }

