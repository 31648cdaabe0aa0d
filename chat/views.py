"""Thin chat endpoints: validate with a schema, call a service or selector, serialize."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, renderers, status
from rest_framework.response import Response

from chat import appends, search, selectors, services
from chat.appends import ThreadHead
from chat.idempotency import (
    idempotency_begin,
    idempotency_record,
    request_fingerprint,
    validate_key,
)
from chat.models import Message, Thread
from chat.schemas import (
    MessageCreateSchema,
    MessageSchema,
    SendAcceptedSchema,
    ThreadCreateSchema,
    ThreadSchema,
    ThreadSearchResultSchema,
    ThreadUpdateSchema,
    thread_data,
    thread_row_data,
)
from chat.stream.sse import sse_response
from workspaces.errors import NOT_FOUND_BODY, ApiError, ServiceUnavailable
from workspaces.ids import looks_like_id
from workspaces.schemas import ErrorSchema
from workspaces.viewsets import ScopedGenericViewSet

THREAD_ORDERING = ("-activity_at", "-id")
SORT_FIELDS = [Thread._meta.get_field(name.lstrip("-")) for name in THREAD_ORDERING]
EVENT_ID = {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}  # what parse_last_event_id reads
IDEMPOTENCY_KEY = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"}
# One event of a stream as an SSE reader parses it (OpenAPI 3.0: the media type's schema is one event).
SSE_EVENT = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[1-9][0-9]*$", "description": "The event's `seq`, from 1 up."},
        "event": {"type": "string", "enum": ["delta", "tool_call", "done", "error"]},
        "data": {
            "type": "string",
            "description": (
                "JSON: `{seq, type, message_id, thread_id, delta, tool_call}`; `done` adds the final "
                "`message`, `error` adds `error` and the partial `message`."
            ),
        },
    },
}
SSE_DESCRIPTION = (
    "Server-Sent Events (`text/event-stream`): numbered `delta` and `tool_call` events, then one "
    "`done` or `error`; `: ping` comments while idle."
)
SEARCH_MAX = 500  # characters of `q`, as the thread list's filter allows


class ChatViewSet(ScopedGenericViewSet):
    scope_family = "chat"

    def get_thread(self, thread_id: str) -> Thread:
        return self.scoped_object_or_404(Thread, thread_id, "thr")

    def thread_head(self, thread_id: str, *, lock: bool) -> ThreadHead:
        """The thread as a send reads it (`chat.appends.thread_head`), or the plain 404; `lock` holds
        its row for the rest of the request's transaction, where the request has one."""
        if looks_like_id(thread_id, "thr"):
            head = appends.thread_head(self.scope, thread_id, lock=lock and connection.in_atomic_block)
            if head is not None:
                return head
        raise exceptions.NotFound()


@extend_schema_view(
    list=extend_schema(
        summary="List threads, newest activity first",
        description=(
            "With `q`, only threads whose title or messages match, in the same order; each carries "
            "`search` (rank, a highlighted snippet of its best match and that message's id)."
        ),
        responses=ThreadSearchResultSchema(many=True),
    ),
    retrieve=extend_schema(summary="Get a thread"),
    destroy=extend_schema(summary="Delete a thread with its messages, attachments and files"),
)
class ThreadViewSet(mixins.ListModelMixin, ChatViewSet):
    model = Thread
    serializer_class = ThreadSchema
    filter_backends = [DjangoFilterBackend]
    filterset_class = selectors.ThreadFilter
    ordering = THREAD_ORDERING

    def refine_queryset(self, queryset):
        return queryset.order_by(*THREAD_ORDERING)

    def list(self, request):
        if connection.vendor == "postgresql" and request.query_params.get("q"):
            found = self.search(request)
            if found is not None:
                return found
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        # What ThreadSchema(page, many=True).data gives, without DRF's list serializer around it.
        results = [thread_data(thread) for thread in page]
        return self.page_with_hits(results, search.text_query(self.scope, request.query_params.get("q", "")))

    def page_with_hits(self, results: list[dict], query: search.TextQuery | None) -> Response:
        """The page's response; with a query, each thread carries its `search` hit."""
        if query is not None and results:
            hits = search.thread_hits(scope=self.scope, query=query, thread_ids=[item["id"] for item in results])
            for item in results:
                item["search"] = hits.get(item["id"])
        return self.get_paginated_response(results)

    def search(self, request) -> Response | None:
        """PostgreSQL, with `q`: the page read as rows by one statement (`selectors.thread_search_rows`),
        the filters validated by ThreadFilter's form; None when `q` holds no word to look for."""
        filters = self.filterset_class.cleaned(request.query_params)
        query = search.text_query(self.scope, filters["q"])
        if query is None:
            return None

        def fetch(seek, count):
            return selectors.thread_search_rows(scope=self.scope, query=query, filters=filters, seek=seek, count=count)

        # A row's sort key: activity_at (its last column) and id (its first).
        page = self.paginator.paginate(request, THREAD_ORDERING, SORT_FIELDS, fetch, key=lambda row: [row[-1], row[0]])
        return self.page_with_hits([thread_row_data(row) for row in page], query)

    @extend_schema(
        summary="Create a thread",
        request=ThreadCreateSchema,
        responses={
            201: ThreadSchema,
            404: OpenApiResponse(ErrorSchema, description="`agent_id` or a `knowledge_document_ids` entry not found."),
        },
    )
    def create(self, request):
        body = ThreadCreateSchema(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        user_id = self.acting_user_id(data.pop("user_id", None), required=True)
        thread = services.thread_create(scope=self.scope, user_id=user_id, **data)
        return Response(ThreadSchema(thread).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(ThreadSchema(self.get_thread(pk)).data)

    @extend_schema(
        summary="Rename, pin, archive, change the system prompt, or refresh the context snapshot",
        request=ThreadUpdateSchema,
        responses=ThreadSchema,
    )
    def partial_update(self, request, pk=None):
        thread = self.get_thread(pk)
        body = ThreadUpdateSchema(data=request.data)
        body.is_valid(raise_exception=True)
        thread = services.thread_update(scope=self.scope, thread=thread, changes=dict(body.validated_data))
        return Response(ThreadSchema(thread).data)

    def destroy(self, request, pk=None):
        services.thread_delete(scope=self.scope, thread=self.get_thread(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets `Accept: text/event-stream` through negotiation; the stream itself is not rendered here."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else b""


def wants_event_stream(request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip().lower() == "text/event-stream" for part in accept.split(","))




def _event_id(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "invalid_request", "Last-Event-ID must be a non-negative integer.")
    return int(raw)


def parse_last_event_id(request) -> int:
    """The header's event id, else the query's, else 0; either one that is not an id is a 400."""
    header = _event_id(request.headers.get("Last-Event-ID"))
    query = _event_id(request.query_params.get("last_event_id"))
    return header if header is not None else query or 0


def ensure_stream_store() -> None:
    """With Redis configured, refuse to start a reply we could not stream (503, nothing written)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    from chat.stream.runtime import get_runtime

    try:
        get_runtime().redis().ping()
    except Exception:  # noqa: BLE001 - any failure to reach Redis is the same 503
        raise ServiceUnavailable() from None


class MessageViewSet(ChatViewSet):
    model = Message
    serializer_class = MessageSchema
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]
    required_scopes = {"cancel": "chat:write", "create": "chat:write", "stream": "chat:read", "list": "chat:read"}

    def perform_content_negotiation(self, request, force=False):
        # Errors and JSON answers are always JSON; streams are chosen by the Accept header itself.
        return renderers.JSONRenderer(), "application/json"

    def get_message(self, thread_id: str, message_id: str) -> Message:
        thread = self.get_thread(thread_id)
        return self.scoped_object_or_404(Message, message_id, "msg", thread=thread)

    def stream_url(self, request, thread_id: str, message_id: str) -> str:
        return request.build_absolute_uri(f"/api/v1/chat/threads/{thread_id}/messages/{message_id}/stream")

    def get_pagination_ordering(self):
        return ("-position",) if self.request.query_params.get("order") == "desc" else ("position",)

    @extend_schema(
        summary="A thread's history, oldest first",
        description=(
            "With `q`, only the messages whose text matches (every word, each as a word prefix), in "
            "the same order; each carries `search` (rank and a highlighted snippet)."
        ),
        parameters=[
            OpenApiParameter("order", OpenApiTypes.STR, enum=["asc", "desc"], description="desc for newest first"),
            OpenApiParameter(
                "q", OpenApiTypes.STR, description="Full-text search of the messages' text (at most 500 characters)."
            ),
        ],
        responses=MessageSchema(many=True),
    )
    def list(self, request, thread_id=None):
        order = request.query_params.get("order", "asc")
        if order not in {"asc", "desc"}:
            raise exceptions.ValidationError({"order": ["Must be asc or desc."]})
        try:  # the thread list's `q` rules (length, no NUL), through the same form field
            text = forms.CharField(max_length=SEARCH_MAX, required=False, strip=False).clean(
                request.query_params.get("q", "")
            )
        except DjangoValidationError as error:
            raise exceptions.ValidationError({"q": error.messages}) from None
        thread = self.get_thread(thread_id)
        query = search.text_query(self.scope, text) if text else None
        queryset = selectors.message_list(scope=self.scope, thread=thread, query=query)
        if text and query is None:
            queryset = queryset.none()  # no word to look for: nothing matches
        page = self.paginate_queryset(queryset)
        results = MessageSchema(page, many=True).data
        if query is not None and page:
            hits = search.message_hits(scope=self.scope, query=query, message_ids=[m.pk for m in page])
            for item in results:
                item["search"] = hits.get(item["id"])
        return self.get_paginated_response(results)

    @extend_schema(
        summary="Send a message and start the assistant's reply",
        description=(
            "Appends the user message and starts the reply. With `Accept: text/event-stream` the "
            "response (200) is the reply's SSE stream; otherwise 202 with both messages and "
            "`stream_url`. Optional `Idempotency-Key` header (24 h): a retry with the same key and "
            "body replays the first answer; a different body is 422; while the first is in flight, 409."
        ),
        request=MessageCreateSchema,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", IDEMPOTENCY_KEY, OpenApiParameter.HEADER, required=False,
                description="1 to 255 printable ASCII characters; kept 24 h per workspace and user.",
            ),
        ],
        responses={
            202: SendAcceptedSchema,
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT, description=SSE_DESCRIPTION),
            404: OpenApiResponse(ErrorSchema, description=(
                "No such thread, or an attachment's document or file is not in the workspace."
            )),
            409: OpenApiResponse(ErrorSchema, description="A request with this Idempotency-Key is still in flight."),
            422: OpenApiResponse(ErrorSchema, description="This Idempotency-Key was used with a different body."),
        },
    )
    def create(self, request, thread_id=None):
        # Without an Idempotency-Key the thread's row is locked by its first read (the request's
        # transaction, PostgreSQL): the send appends under that lock without reading it again. With
        # one, the key's in-flight check (409) must come before any wait on the thread's lock.
        thread = self.thread_head(thread_id, lock="Idempotency-Key" not in request.headers)
        body = MessageCreateSchema(data=request.data)
        body.is_valid(raise_exception=True)
        key = validate_key(request.headers.get("Idempotency-Key"))
        streaming = wants_event_stream(request)
        ensure_stream_store()
        fingerprint = request_fingerprint(thread.pk, request.data) if key else ""
        # One unit with the request's own transaction (PostgreSQL): no savepoint, a failure fails it whole.
        with transaction.atomic(savepoint=False):
            replay = idempotency_begin(scope=self.scope, key=key, fingerprint=fingerprint) if key else None
            if replay is None:
                user_message, reply = services.message_send(
                    scope=self.scope,
                    thread=thread,
                    content=body.validated_data["content"],
                    attachments=body.validated_data.get("attachments"),
                )
                reply_id = reply.pk
                # A plain stream answers with neither object: serialize only for a 202 or a replay record.
                answer = None
                if key or not streaming:
                    answer = {
                        "user_message": MessageSchema(user_message).data,
                        "assistant_message": MessageSchema(reply).data,
                        "stream_url": self.stream_url(request, thread.pk, reply.pk),
                    }
                if key:
                    idempotency_record(
                        scope=self.scope, key=key, fingerprint=fingerprint, thread_id=thread.pk, response=answer
                    )
            else:
                answer = replay
                reply_id = replay["assistant_message"]["id"]
        if streaming:
            return sse_response(self.scope.workspace_id, reply_id, 0)
        return Response(answer, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Stream an assistant message (Server-Sent Events)",
        description=(
            "Replays the message's events and follows them live. `Last-Event-ID` (header) or "
            "`?last_event_id=` resumes after that event. A finished message asked for events after "
            "its last one answers 204. Every stream ends with a `done` or `error` event."
        ),
        parameters=[
            OpenApiParameter(
                "Last-Event-ID", EVENT_ID, OpenApiParameter.HEADER, required=False,
                description="Resume after this event (its `id`); wins over `last_event_id`.",
            ),
            OpenApiParameter(
                "last_event_id", EVENT_ID, OpenApiParameter.QUERY, required=False,
                description="As the Last-Event-ID header, for clients that cannot set headers.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT, description=SSE_DESCRIPTION),
            204: OpenApiResponse(description="The message has ended and has no event after the one asked for."),
        },
    )
    def stream(self, request, thread_id=None, message_id=None):
        message = self.get_message(thread_id, message_id)
        after = parse_last_event_id(request)
        if message.role != Message.Role.ASSISTANT:
            raise exceptions.NotFound()
        if message.is_final and message.last_seq and after >= message.last_seq:
            return HttpResponse(status=204)
        return sse_response(self.scope.workspace_id, message.pk, after)

    @extend_schema(
        summary="Cancel an assistant reply",
        description="Stops generation; the reply keeps its partial content with status `cancelled`. Idempotent.",
        request=None,
        responses=MessageSchema,
    )
    def cancel(self, request, thread_id=None, message_id=None):
        message = self.get_message(thread_id, message_id)
        if not message.is_final:
            from chat.stream.runtime import get_runtime

            try:
                get_runtime().cancels.cancel_and_wait(self.scope.workspace_id, message.pk)
            except ConnectionError:
                raise ServiceUnavailable() from None
            message = self.get_message(thread_id, message_id)
        return Response(MessageSchema(message).data)


__all__ = ["ThreadViewSet", "MessageViewSet", "NOT_FOUND_BODY"]
