"""Thin knowledge endpoints: documents (CRUD and ranked search) and the brand profile."""

from __future__ import annotations

import hashlib

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response

from knowledge import selectors, services
from knowledge.models import BrandProfile, BrandProfileVersion, Document
from knowledge.schemas import (
    SEARCH_QUERY_MAX,
    BrandProfileInputSchema,
    BrandProfileSchema,
    BrandProfileVersionSchema,
    DocumentCreateSchema,
    DocumentSchema,
)
from workspaces.pagination import InvalidCursor, KeysetPagination
from workspaces.schemas import ExactCharField
from workspaces.viewsets import ScopedGenericViewSet


class RankedPagination(KeysetPagination):
    """Pages of a ranked result list. The cursor holds a position in the ranking, signed and bound
    to the query, so it cannot be replayed against a different search."""

    def paginate_ranked(self, ranked: list, request, query: str) -> list:
        self.request = request
        self.ordering_signature = "rank:" + hashlib.sha256(query.encode()).hexdigest()[:16]
        limit = self.get_limit(request)
        cursor = self.decode_cursor(request, [models.IntegerField()])
        offset = 0
        if cursor is not None:
            direction, (position,) = cursor
            if type(position) is not int or position < 0:
                raise InvalidCursor({"cursor": ["The cursor is invalid."]})
            offset = position if direction == "n" else max(0, position - limit)
        page = ranked[offset : offset + limit]
        self.has_next = offset + limit < len(ranked)
        self.has_previous = offset > 0
        self.first_key, self.last_key = [offset], [offset + len(page)]
        return page


class SearchQuerySchema(serializers.Serializer):
    q = ExactCharField(required=False, allow_blank=True, max_length=SEARCH_QUERY_MAX)


class KnowledgeViewSet(ScopedGenericViewSet):
    scope_family = "knowledge"


@extend_schema_view(
    retrieve=extend_schema(summary="Get a document", responses=DocumentSchema),
    destroy=extend_schema(summary="Delete a document and its passages", responses={204: None}),
)
class DocumentViewSet(KnowledgeViewSet):
    model = Document
    serializer_class = DocumentSchema
    ordering = selectors.DOCUMENT_ORDERING

    def refine_queryset(self, queryset):
        return queryset.order_by(*selectors.DOCUMENT_ORDERING)

    def get_document(self, document_id: str) -> Document:
        return self.scoped_object_or_404(Document, document_id, "doc")

    @extend_schema(
        summary="List documents, newest first, or search them with q",
        parameters=[
            OpenApiParameter(
                "q",
                OpenApiTypes.STR,
                description=(
                    "Full-text search (at most 500 characters). Results come best match first: "
                    'documents holding every word, then some; `"phrase"`, `-word` and `or` work as in '
                    "web search."
                ),
            )
        ],
        responses=DocumentSchema(many=True),
    )
    def list(self, request):
        params = SearchQuerySchema(data=request.query_params)
        params.is_valid(raise_exception=True)
        query = params.validated_data.get("q", "")
        if not query.strip():
            page = self.paginate_queryset(self.get_queryset())
            return self.get_paginated_response(DocumentSchema(page, many=True).data)
        ranked = [document_id for document_id, _ in selectors.document_search(scope=self.scope, query=query)]
        paginator = RankedPagination()
        page_ids = paginator.paginate_ranked(ranked, request, query)
        found = self.get_queryset().in_bulk(page_ids)
        documents = [found[pk] for pk in page_ids if pk in found]
        return paginator.get_paginated_response(DocumentSchema(documents, many=True).data)

    @extend_schema(summary="Create a document", request=DocumentCreateSchema, responses={201: DocumentSchema})
    def create(self, request):
        body = DocumentCreateSchema(data=request.data)
        body.is_valid(raise_exception=True)
        document = services.document_create(scope=self.scope, **body.validated_data)
        return Response(DocumentSchema(document).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(DocumentSchema(self.get_document(pk)).data)

    @extend_schema(summary="Change a document", request=DocumentCreateSchema, responses=DocumentSchema)
    def partial_update(self, request, pk=None):
        document = self.get_document(pk)
        body = DocumentCreateSchema(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        document = services.document_update(scope=self.scope, document=document, changes=dict(body.validated_data))
        return Response(DocumentSchema(document).data)

    def destroy(self, request, pk=None):
        services.document_delete(scope=self.scope, document=self.get_document(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BrandProfileViewSet(KnowledgeViewSet):
    model = BrandProfile
    serializer_class = BrandProfileSchema

    def current(self) -> BrandProfile:
        profile = selectors.brand_profile_get(scope=self.scope)
        if profile is None:  # never saved: the empty profile, version 0
            profile = BrandProfile(workspace_id=self.scope.workspace_id, version=0, updated_at=None)
        return profile

    @extend_schema(summary="Get the workspace's brand profile", responses=BrandProfileSchema)
    def retrieve(self, request):
        return Response(BrandProfileSchema(self.current()).data)

    @extend_schema(
        summary="Replace the brand profile (fields left out become empty); the version rises on change",
        request=BrandProfileInputSchema,
        responses=BrandProfileSchema,
    )
    def update(self, request):
        return self._write(request, replace=True)

    @extend_schema(
        summary="Change some brand profile fields; the version rises on change",
        request=BrandProfileInputSchema,
        responses=BrandProfileSchema,
    )
    def partial_update(self, request):
        return self._write(request, replace=False)

    def _write(self, request, *, replace: bool) -> Response:
        body = BrandProfileInputSchema(data=request.data)
        body.is_valid(raise_exception=True)
        profile = services.brand_profile_update(scope=self.scope, changes=dict(body.validated_data), replace=replace)
        return Response(BrandProfileSchema(profile).data)


class BrandProfileVersionViewSet(KnowledgeViewSet):
    model = BrandProfileVersion
    serializer_class = BrandProfileVersionSchema
    ordering = ("-version",)

    def refine_queryset(self, queryset):
        return queryset.order_by("-version")

    @extend_schema(summary="Earlier and current brand profile versions, newest first")
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(BrandProfileVersionSchema(page, many=True).data)
