"""`/api/v1/workspace`: who am I, and the members a service key may act for."""

from __future__ import annotations

from types import SimpleNamespace

from django.db import connections
from django.http import JsonResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import mixins
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from workspaces.authentication import KeyPrincipal
from workspaces.models import Membership, Workspace
from workspaces.schemas import MemberSchema, WorkspaceSchema
from workspaces.viewsets import ScopedGenericViewSet


class WorkspaceViewSet(ScopedGenericViewSet):
    serializer_class = WorkspaceSchema
    pagination_class = None

    @extend_schema(summary="The workspace and key of this request", responses=WorkspaceSchema)
    def retrieve(self, request):
        workspace = Workspace.objects.get(pk=self.scope.workspace_id)
        api_key = request.user.key if isinstance(request.user, KeyPrincipal) else None
        return Response(WorkspaceSchema(workspace, context={"api_key": api_key}).data)


class MemberViewSet(mixins.ListModelMixin, ScopedGenericViewSet):
    """Members of the workspace; a personal key sees only its own user."""

    serializer_class = MemberSchema
    ordering = ("created_at", "id")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation: no request, no scope
            return Membership.objects.none()
        # Membership is an identity table (no RLS); it is scoped here, in this one place.
        queryset = Membership.objects.filter(workspace_id=self.scope.workspace_id).select_related("user")
        if self.scope.owner_user_id is not None:
            queryset = queryset.filter(user_id=self.scope.owner_user_id)
        return queryset

    @extend_schema(summary="List workspace members")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready when the database and (when configured) the stream store answer."""
    checks: dict[str, str] = {}
    ok = True
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {exc.__class__.__name__}"
        ok = False
    from django.conf import settings

    if settings.REDIS_URL:
        from tenex.redis_clients import check_reachable

        try:
            check_reachable(settings.REDIS_URL, timeout=1)
            checks["stream_store"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["stream_store"] = f"error: {exc.__class__.__name__}"
            ok = False
    else:
        checks["stream_store"] = "ok (in-process)"
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


class JsonErrorsMixin:
    """For a DRF view that renders something else (YAML, HTML): its errors (405, 406) in the API's
    one JSON error shape, and OPTIONS as JSON (an HTML page has no template for it)."""

    def finalize_response(self, request, response, *args, **kwargs):
        if response.status_code >= 400 or request.method == "OPTIONS":
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


class FormatQueryNegotiation(DefaultContentNegotiation):
    """DRF's negotiation with `?format=` honoured, which the API's settings turn off elsewhere."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE="format")


class SchemaView(JsonErrorsMixin, SpectacularAPIView):
    """The OpenAPI schema, YAML or (`Accept: application/vnd.oai.openapi+json` or `?format=json`) JSON."""

    content_negotiation_class = FormatQueryNegotiation


class DocsView(JsonErrorsMixin, SpectacularSwaggerSplitView):
    """The interactive API docs page."""


class RedocView(JsonErrorsMixin, SpectacularRedocView):
    """The API reference page (ReDoc)."""
