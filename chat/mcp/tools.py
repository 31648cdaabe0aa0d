"""The chat tools: what each accepts (JSON Schema for clients), which scope it needs, and its work.

Each tool's `run` is synchronous and runs inside `tenant_context(scope.workspace_id)`: one
transaction with the row-level-security workspace set. Inputs go through the REST API's schemas,
writes through `chat.services`, reads through scoped managers and the same keyset cursor, and
results are the REST API's JSON objects. Failures are DRF exceptions, answered in the REST error
shape by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.http import QueryDict
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer

from chat import selectors, services
from chat.models import Thread
from chat.schemas import (
    CONTENT_MAX,
    MAX_ATTACHMENTS,
    MAX_DOCUMENT_REFERENCES,
    SYSTEM_PROMPT_MAX,
    TITLE_MAX,
    MessageCreateSchema,
    MessageSchema,
    ThreadCreateSchema,
    ThreadSchema,
    ThreadUpdateSchema,
)
from chat.views import ensure_stream_store
from workspaces.pagination import DEFAULT_LIMIT, MAX_LIMIT, KeysetPagination
from workspaces.schemas import ExactCharField, StrictBooleanField, StrictSerializer
from workspaces.tenancy import Scope
from workspaces.viewsets import ScopedViewSetMixin

READ = "chat:read"
WRITE = "chat:write"
Json = dict[str, Any]


# --- input and output schemas (what clients and LLMs see) --------------------------------------
def _nullable(kind: str, description: str = "") -> Json:
    schema: Json = {"type": [kind, "null"]}
    if description:
        schema["description"] = description
    return schema


THREAD_ID = {"type": "string", "description": "The thread's id, as returned by the other tools (thr_...)."}
USER_ID = {
    "type": "string",
    "maxLength": 64,
    "description": (
        "A workspace member's id (usr_...). Service keys name the member they act for or list; "
        "personal keys always act as their own user."
    ),
}
CURSOR = {
    "type": "string",
    "description": "Opaque cursor: pass the previous page's `next_cursor` to get the next page. "
                   "Omit for the first page.",
}
LIMIT = {
    "type": "integer",
    "minimum": 1,
    "default": DEFAULT_LIMIT,
    "description": f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}; "
                   f"larger values are clamped to {MAX_LIMIT}).",
}

STRING = {"type": "string"}
TIMESTAMP = {"type": "string", "format": "date-time"}


def _api_object(kind: str, properties: Json, *, optional: tuple[str, ...] = ()) -> Json:
    """The schema of a REST API object (`{"id", "object": kind, ...}`); every property but `optional`
    is always there."""
    properties = {"id": STRING, "object": {"const": kind}, **properties}
    return {
        "type": "object",
        "description": f"A chat {kind}, exactly as the REST API returns it.",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


THREAD_OBJECT = _api_object(
    "thread",
    {
        "title": STRING,
        "user_id": STRING,
        "agent_id": _nullable("string"),
        "system_prompt": STRING,
        "knowledge_document_ids": {"type": "array", "items": STRING},
        "pinned": {"type": "boolean"},
        "archived": {"type": "boolean"},
        "message_count": {"type": "integer"},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "last_message_at": _nullable("string"),
        "metadata": {"type": "object"},
        "context": {"description": "The system context snapshot this thread answers with."},
    },
    optional=("context",),
)

MESSAGE_OBJECT = _api_object(
    "message",
    {
        "thread_id": STRING,
        "role": {"enum": ["user", "assistant"]},
        "content": STRING,
        "status": {"enum": ["complete", "streaming", "cancelled", "failed", "interrupted"]},
        "attachments": {"type": "array", "items": {"type": "object"}},
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
        "error": _nullable("object"),
        "created_at": TIMESTAMP,
        "completed_at": _nullable("string"),
    },
)


def _page_of(item: Json) -> Json:
    return {
        "type": "object",
        "properties": {
            "results": {"type": "array", "items": item},
            "next_cursor": _nullable("string", "Pass as `cursor` to get the next page; null on the last page."),
        },
        "required": ["results", "next_cursor"],
    }


DELETED_THREAD = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "object": {"const": "thread"}, "deleted": {"const": True}},
    "required": ["id", "object", "deleted"],
}

ATTACHMENT_INPUT = {
    "type": "object",
    "description": (
        "What the assistant should read with this message: a knowledge document "
        '({"type": "knowledge_document", "document_id": "doc_..."}), a lead '
        '({"type": "lead", "lead": {"name", "company", "email", "notes", ...}}) or an uploaded file '
        '({"type": "file", "file_id": "file_..."}, uploaded first with POST /api/v1/chat/files).'
    ),
    "properties": {
        "type": {"enum": ["knowledge_document", "lead", "file"]},
        "document_id": {"type": "string"},
        "file_id": {"type": "string"},
        "lead": {"type": "object"},
    },
    "required": ["type"],
    "additionalProperties": False,
}


def _object(properties: Json, required: tuple[str, ...] = ()) -> Json:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


# --- argument checks ---------------------------------------------------------------------------
class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: "5", 5.5 and true are refused rather than coerced."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            raise serializers.ValidationError("Must be an integer.")
        return super().to_internal_value(data)


class PageArguments(StrictSerializer):
    cursor = ExactCharField(required=False)
    limit = StrictIntegerField(required=False, min_value=1)


class ThreadListArguments(PageArguments):
    user_id = ExactCharField(required=False, max_length=64)
    agent_id = ExactCharField(required=False, max_length=64)
    q = ExactCharField(required=False, max_length=500)
    pinned = StrictBooleanField(required=False)
    archived = StrictBooleanField(required=False)


class MessageListArguments(PageArguments):
    order = serializers.ChoiceField(choices=["asc", "desc"], required=False)


def _valid(schema: type[serializers.Serializer], data: object) -> dict:
    body = schema(data=data)
    body.is_valid(raise_exception=True)
    return dict(body.validated_data)


def _thread_arguments(
    arguments: dict, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> tuple[str, dict]:
    """A thread tool's `thread_id` and its other arguments; unknown or missing names are refused."""
    allowed = {"thread_id", *required, *optional}
    problems = {name: ["Unknown field."] for name in sorted(set(arguments) - allowed)[:20]}
    problems.update({name: ["This field is required."] for name in ("thread_id", *required) if name not in arguments})
    if problems:
        raise exceptions.ValidationError(problems)
    thread_id = arguments["thread_id"]
    if not isinstance(thread_id, str):
        raise exceptions.ValidationError({"thread_id": ["Must be a string thread id (thr_...)."]})
    return thread_id, {name: value for name, value in arguments.items() if name != "thread_id"}


def _without_nulls(arguments: dict, optional: tuple[str, ...]) -> dict:
    # Clients often send `null` for an optional filter or the first page's cursor: same as omitting it.
    return {name: value for name, value in arguments.items() if value is not None or name not in optional}


class _ScopeActions(ScopedViewSetMixin):
    """The scoped viewsets' lookups and acting-user rules, for a tool call's scope instead of a request."""

    scope = None  # shadows the request-reading property

    def __init__(self, scope: Scope):
        self.scope = scope


def _thread(scope: Scope, thread_id: str) -> Thread:
    return _ScopeActions(scope).scoped_object_or_404(Thread, thread_id, "thr")


def as_json(data: Any) -> Any:
    """Serializer output as plain JSON, exactly as the REST API renders it."""
    return json.loads(JSONRenderer().render(data))


class _Query:
    """The slice of a DRF request that the filter backend and the keyset paginator read."""

    def __init__(self, params: dict[str, Any]):
        self.query_params = QueryDict(mutable=True)
        for name, value in params.items():
            self.query_params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)


def _page(queryset, query: _Query, ordering: tuple[str, ...], schema) -> Json:
    paginator = KeysetPagination()
    rows = paginator.paginate_queryset(queryset, query, SimpleNamespace(get_pagination_ordering=lambda: ordering))
    next_cursor = None
    if paginator.has_next and paginator.last_key is not None:
        next_cursor = paginator.encode_cursor("n", paginator.last_key)
    return {"results": as_json(schema(rows, many=True).data), "next_cursor": next_cursor}


# --- the tools' work (synchronous, inside the tenant transaction) -------------------------------
def list_threads(scope: Scope, arguments: dict) -> Json:
    query = _Query(_valid(ThreadListArguments, _without_nulls(arguments, tuple(ThreadListArguments().fields))))
    queryset = DjangoFilterBackend().filter_queryset(
        query, selectors.thread_list(scope=scope), SimpleNamespace(filterset_class=selectors.ThreadFilter)
    )
    return _page(queryset, query, selectors.THREAD_ORDERING, ThreadSchema)


def create_thread(scope: Scope, arguments: dict) -> Json:
    data = _valid(ThreadCreateSchema, arguments)
    user_id = _ScopeActions(scope).acting_user_id(data.pop("user_id", None), required=True)
    return as_json(ThreadSchema(services.thread_create(scope=scope, user_id=user_id, **data)).data)


def get_thread(scope: Scope, arguments: dict) -> Json:
    thread_id, _ = _thread_arguments(arguments)
    return as_json(ThreadSchema(_thread(scope, thread_id)).data)


def list_messages(scope: Scope, arguments: dict) -> Json:
    page_options = ("cursor", "limit", "order")
    thread_id, rest = _thread_arguments(_without_nulls(arguments, page_options), optional=page_options)
    thread = _thread(scope, thread_id)
    page = _valid(MessageListArguments, rest)
    ordering = ("-position",) if page.pop("order", "asc") == "desc" else ("position",)
    return _page(selectors.message_list(scope=scope, thread=thread), _Query(page), ordering, MessageSchema)


def delete_thread(scope: Scope, arguments: dict) -> Json:
    thread_id, _ = _thread_arguments(arguments)
    thread = _thread(scope, thread_id)
    services.thread_delete(scope=scope, thread=thread)
    return {"id": thread_id, "object": "thread", "deleted": True}


def send_message(scope: Scope, arguments: dict) -> Json:
    """Append the user's message and start the reply; the reply as it starts (status `streaming`)."""
    thread_id, rest = _thread_arguments(arguments, required=("content",), optional=("attachments",))
    thread = _thread(scope, thread_id)
    body = _valid(MessageCreateSchema, rest)
    ensure_stream_store()
    _, reply = services.message_send(
        scope=scope, thread=thread, content=body["content"], attachments=body.get("attachments")
    )
    return as_json(MessageSchema(reply).data)


# --- the catalogue -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatTool:
    name: str
    title: str
    description: str
    scope: str
    input_schema: Json
    output_schema: Json
    run: Callable[[Scope, dict], Json]
    destructive: bool = False
    idempotent: bool = False  # reads always are
    streams_reply: bool = False  # the result is followed until the reply ends, deltas as progress

    @property
    def read_only(self) -> bool:
        return self.scope == READ


NOT_FOUND_NOTE = (
    " A thread that does not exist, belongs to another workspace or (for a personal key) to another "
    "user is the same `not_found` error."
)
PAGE_NOTE = (
    " Answers one page: `{\"results\": [...], \"next_cursor\": \"...\"|null}`; pass `next_cursor` back as "
    "`cursor` for the next page."
)


def _update_tool(name: str, title: str, description: str, field: str, field_schema: Json) -> ChatTool:
    """A tool that changes one field of a thread (PATCH /threads/{id} with that field alone)."""

    def update(scope: Scope, arguments: dict) -> Json:
        thread_id, change = _thread_arguments(arguments, required=(field,))
        thread = _thread(scope, thread_id)
        thread = services.thread_update(scope=scope, thread=thread, changes=_valid(ThreadUpdateSchema, change))
        return as_json(ThreadSchema(thread).data)

    return ChatTool(
        name=name,
        title=title,
        description=description + NOT_FOUND_NOTE,
        scope=WRITE,
        input_schema=_object({"thread_id": THREAD_ID, field: field_schema}, ("thread_id", field)),
        output_schema=THREAD_OBJECT,
        run=update,
        idempotent=True,
    )


def _list_tool(
    name: str,
    title: str,
    description: str,
    filters: Json,
    item: Json,
    run: Callable[[Scope, dict], Json],
    *,
    required: tuple[str, ...] = (),
) -> ChatTool:
    """A read that answers one page of `item`s with the REST API's keyset cursor."""
    return ChatTool(
        name=name,
        title=title,
        description=description + PAGE_NOTE,
        scope=READ,
        input_schema=_object({**filters, "cursor": CURSOR, "limit": LIMIT}, required),
        output_schema=_page_of(item),
        run=run,
    )


TOOLS: tuple[ChatTool, ...] = (
    _list_tool(
        "list_chat_threads",
        "List chat threads",
        "List chat threads, newest activity first (last message time, or creation time for a thread without "
        "messages). Archived threads are hidden unless `archived` is given. With a service key and no "
        "`user_id`, covers the whole workspace; a personal key sees only its own threads.",
        {
            "user_id": {**USER_ID, "description": "Only this member's threads (usr_...)."},
            "pinned": {"type": "boolean", "description": "true: only pinned threads; false: only unpinned."},
            "archived": {"type": "boolean",
                         "description": "true: only archived threads; false (default): only active ones."},
            "agent_id": {"type": "string", "maxLength": 64,
                         "description": "Only threads bound to this agent (agt_...)."},
            "q": {"type": "string", "maxLength": 500, "description": "Search thread titles and message text."},
        },
        THREAD_OBJECT,
        list_threads,
    ),
    ChatTool(
        name="create_chat_thread",
        title="Create a chat thread",
        description=(
            "Start a new chat thread and return it. Without a title, the thread takes one from its first "
            "message. The system prompt, agent and brand knowledge are snapshotted on the thread. A service "
            "key must name the member it acts for with `user_id`; a personal key creates for its own user."
        ),
        scope=WRITE,
        input_schema=_object(
            {
                "title": {"type": "string", "maxLength": TITLE_MAX, "description": "The thread's title."},
                "system_prompt": {
                    "type": "string",
                    "maxLength": SYSTEM_PROMPT_MAX,
                    "description": "Instructions the assistant follows in this thread.",
                },
                "agent_id": _nullable(
                    "string", "Bind the thread to this agent (agt_...); it answers with the agent's instructions."
                ),
                "knowledge_document_ids": {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": MAX_DOCUMENT_REFERENCES,
                    "description": "Knowledge documents (doc_...) the assistant should always consider.",
                },
                "metadata": {"type": "object",
                             "description": "Free-form JSON object kept with the thread (at most 16 KB)."},
                "user_id": {**USER_ID,
                            "description": "The member the thread is for (usr_...); required with a service key."},
            }
        ),
        output_schema=THREAD_OBJECT,
        run=create_thread,
    ),
    ChatTool(
        name="get_chat_thread",
        title="Get a chat thread",
        description="Get one chat thread by id." + NOT_FOUND_NOTE,
        scope=READ,
        input_schema=_object({"thread_id": THREAD_ID}, ("thread_id",)),
        output_schema=THREAD_OBJECT,
        run=get_thread,
    ),
    _list_tool(
        "list_chat_messages",
        "List a thread's messages",
        "A thread's history, oldest first (`order: \"desc\"` for newest first), with attachments, tool calls "
        "and timestamps. An assistant reply still being written has status `streaming`." + NOT_FOUND_NOTE,
        {
            "thread_id": THREAD_ID,
            "order": {"enum": ["asc", "desc"], "default": "asc",
                      "description": "asc: oldest first; desc: newest first."},
        },
        MESSAGE_OBJECT,
        list_messages,
        required=("thread_id",),
    ),
    ChatTool(
        name="send_chat_message",
        title="Send a chat message",
        description=(
            "Send a user message to a thread and wait for the assistant's reply. While the reply is written, "
            "each text delta arrives as a progress notification (its `message` is the delta text, `progress` "
            "the event's sequence number) if the request carries a progressToken. The result is the final "
            "assistant message: status `complete`, or `failed` / `cancelled` / `interrupted` with partial "
            "content and an `error`. If the call is cancelled or the connection drops, the reply still "
            "finishes and is saved: read it with list_chat_messages." + NOT_FOUND_NOTE
        ),
        scope=WRITE,
        input_schema=_object(
            {
                "thread_id": THREAD_ID,
                "content": {"type": "string", "minLength": 1, "maxLength": CONTENT_MAX,
                            "description": "The user's message, stored exactly as sent."},
                "attachments": {"type": "array", "items": ATTACHMENT_INPUT, "maxItems": MAX_ATTACHMENTS},
            },
            ("thread_id", "content"),
        ),
        output_schema=MESSAGE_OBJECT,
        run=send_message,
        streams_reply=True,
    ),
    _update_tool(
        "rename_chat_thread",
        "Rename a chat thread",
        "Give a thread a new title (it no longer follows its first message).",
        "title",
        {"type": "string", "minLength": 1, "maxLength": TITLE_MAX},
    ),
    _update_tool(
        "pin_chat_thread",
        "Pin or unpin a chat thread",
        "Pin (`pinned: true`) or unpin (`pinned: false`) a thread.",
        "pinned",
        {"type": "boolean"},
    ),
    _update_tool(
        "archive_chat_thread",
        "Archive or restore a chat thread",
        "Archive (`archived: true`) or restore (`archived: false`) a thread. Archived threads are hidden "
        "from list_chat_threads unless it is asked for them.",
        "archived",
        {"type": "boolean"},
    ),
    ChatTool(
        name="delete_chat_thread",
        title="Delete a chat thread",
        description=(
            "Delete a thread for good, with its messages, attachments and stored files. Answers "
            '`{"id": "thr_...", "object": "thread", "deleted": true}`.' + NOT_FOUND_NOTE
        ),
        scope=WRITE,
        input_schema=_object({"thread_id": THREAD_ID}, ("thread_id",)),
        output_schema=DELETED_THREAD,
        run=delete_thread,
        destructive=True,
    ),
)

TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
