"""The one scoped base for every tenant endpoint.

It resolves the workspace (and user) from the request, runs the request in one transaction with
the row-level-security workspace set, and builds every queryset from the model's scoped manager.
Subclasses refine querysets through `refine_queryset`; they never filter by workspace themselves.
"""

from __future__ import annotations

from django.db import connection, transaction
from rest_framework import exceptions, viewsets

from workspaces.authentication import DATABASE_WORKSPACE_SET, SETS_DATABASE_WORKSPACE
from workspaces.ids import looks_like_id
from workspaces.models import Membership
from workspaces.pagination import KeysetPagination
from workspaces.tenancy import Scope, set_database_workspace, unique_or_none


class ScopedViewSetMixin:
    model = None  # the tenant model this endpoint serves
    scope_family: str | None = None
    pagination_class = KeysetPagination
    lookup_value_regex = r"[^/]+"

    def dispatch(self, request, *args, **kwargs):
        # On PostgreSQL, one transaction per request: the RLS setting lives exactly as long as it
        # does, and a request that fails halfway changes nothing. SQLite has no RLS, and there a
        # request-wide write lock would serialise readers behind the generation worker; every
        # service is atomic on its own.
        if connection.vendor != "postgresql":
            return super().dispatch(request, *args, **kwargs)
        with transaction.atomic():
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        # Authentication runs in super().initial(), inside this request's transaction: an API key's
        # lookup may set the workspace in the same statement (workspaces.authentication).
        in_transaction = connection.in_atomic_block
        setattr(request, SETS_DATABASE_WORKSPACE, in_transaction)
        super().initial(request, *args, **kwargs)
        if not in_transaction or getattr(request, DATABASE_WORKSPACE_SET, None) != self.scope.workspace_id:
            set_database_workspace(self.scope.workspace_id)

    @property
    def scope(self) -> Scope:
        auth = self.request.auth
        if not isinstance(auth, Scope):
            raise exceptions.NotAuthenticated()
        return auth

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation: no request, no scope
            return self.model.objects.none()
        return self.refine_queryset(self.model.objects.for_scope(self.scope))

    def refine_queryset(self, queryset):
        return queryset

    def scoped_object_or_404(self, model, object_id: str, prefix: str, **filters):
        """The object with this public id inside the request's scope, or the one plain 404.

        A malformed id (wrong prefix, 10 KB of garbage) never reaches the database.
        """
        if looks_like_id(object_id, prefix):
            found = unique_or_none(model.objects.for_scope(self.scope).filter(pk=object_id, **filters))
            if found is not None:
                return found
        raise exceptions.NotFound()

    # --- acting user ------------------------------------------------------------------------
    def acting_user_id(self, requested: object, *, required: bool) -> str | None:
        """The user a write acts for: a personal key's own user, or the member a service key names."""
        scope = self.scope
        if requested is not None and not isinstance(requested, str):
            raise exceptions.ValidationError({"user_id": ["Must be a string user id (usr_...)."]})
        if not scope.is_service:
            if requested not in (None, scope.user_id):
                raise exceptions.ValidationError({"user_id": ["A personal key acts only as its own user."]})
            return scope.user_id
        if requested is None:
            if required:
                raise exceptions.ValidationError(
                    {"user_id": ["A service key must name the member it acts for with user_id."]}
                )
            return None
        if not Membership.objects.filter(workspace_id=scope.workspace_id, user_id=requested).exists():
            raise exceptions.ValidationError({"user_id": ["No member of this workspace has this id."]})
        return requested


class ScopedGenericViewSet(ScopedViewSetMixin, viewsets.GenericViewSet):
    pass
