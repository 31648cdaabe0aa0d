"""Scope checks: a view names its family (`chat`, `knowledge`, `agents`); reads need `family:read`."""

from __future__ import annotations

from rest_framework import permissions

from workspaces.tenancy import Scope


class HasScope(permissions.BasePermission):
    message = "This API key lacks the scope this action needs."

    def has_permission(self, request, view) -> bool:
        scope = request.auth
        if not isinstance(scope, Scope):
            return False
        needed = required_scope(request, view)
        if needed is None:
            return True
        if needed not in scope.scopes:
            self.message = f"This API key lacks the `{needed}` scope."
            return False
        return True


def required_scope(request, view) -> str | None:
    explicit = getattr(view, "required_scopes", None)
    action = getattr(view, "action", None)
    if explicit and action in explicit:
        return explicit[action]
    family = getattr(view, "scope_family", None)
    if family is None:
        return None
    mode = "read" if request.method in permissions.SAFE_METHODS else "write"
    return f"{family}:{mode}"
