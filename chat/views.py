"""Thin chat endpoints: validate with a schema, call a service or selector, serialize."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.response import Response

from chat import selectors, services
from chat.models import Message, Thread
from chat.schemas import MessageSchema, ThreadCreateSchema, ThreadSchema, ThreadUpdateSchema
from workspaces.errors import NOT_FOUND_BODY
from workspaces.ids import looks_like_id
from workspaces.viewsets import ScopedGenericViewSet

THREAD_ORDERING = ("-activity_at", "-id")


class ChatViewSet(ScopedGenericViewSet):
    scope_family = "chat"

    def get_thread(self, thread_id: str) -> Thread:
        if not looks_like_id(thread_id, "thr"):
            raise exceptions.NotFound()
        thread = selectors.thread_get(scope=self.scope, thread_id=thread_id)
        if thread is None:
            raise exceptions.NotFound()
        return thread


@extend_schema_view(
    list=extend_schema(summary="List threads, newest activity first"),
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

    @extend_schema(summary="Create a thread", request=ThreadCreateSchema, responses={201: ThreadSchema})
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


class MessageViewSet(ChatViewSet):
    model = Message
    serializer_class = MessageSchema

    def get_pagination_ordering(self):
        return ("-position",) if self.request.query_params.get("order") == "desc" else ("position",)

    @extend_schema(
        summary="A thread's history, oldest first",
        parameters=[OpenApiParameter("order", OpenApiTypes.STR, enum=["asc", "desc"], description="desc for newest first")],
        responses=MessageSchema(many=True),
    )
    def list(self, request, thread_id=None):
        order = request.query_params.get("order", "asc")
        if order not in {"asc", "desc"}:
            raise exceptions.ValidationError({"order": ["Must be asc or desc."]})
        thread = self.get_thread(thread_id)
        queryset = selectors.message_list(scope=self.scope, thread=thread)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(MessageSchema(page, many=True).data)


__all__ = ["ThreadViewSet", "MessageViewSet", "NOT_FOUND_BODY"]
