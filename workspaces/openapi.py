"""OpenAPI pieces: the Bearer key scheme and the one error shape on every operation.

`TenexAutoSchema` is meant as REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]; `ApiKeyScheme` registers
itself when this module is imported (WorkspacesConfig.ready does that).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from workspaces.schemas import ErrorSchema

SECURITY_SCHEME_NAME = "BearerKey"
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer tnx_...` for workspaces.authentication.ApiKeyAuthentication."""

    target_class = "workspaces.authentication.ApiKeyAuthentication"
    name = SECURITY_SCHEME_NAME

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "tnx_...",
            "description": "A workspace API key (`tnx_` + 38 characters), personal or service.",
        }


class TenexAutoSchema(AutoSchema):
    """AutoSchema that documents the error responses an operation can give, all as `Error`."""

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for status_code, description in self.error_responses():
            code = str(status_code)
            if code not in responses:  # an explicit @extend_schema response wins
                body = self._get_response_for_code(ErrorSchema, code, direction=direction)
                responses[code] = {**body, "description": description}
        return responses

    def error_responses(self) -> list[tuple[int, str]]:
        """(status, description) pairs that apply to this operation."""
        view = self.view
        errors: list[tuple[int, str]] = []
        if self.method in _BODY_METHODS or self._is_list_view():
            errors.append((400, "Invalid body or query parameter; `fields` names each offending field."))
        if getattr(view, "authentication_classes", None):
            errors.append((401, "Missing, malformed, unknown, revoked or expired API key (one body for all)."))
        if getattr(view, "permission_classes", None):
            errors.append((403, "The API key lacks the scope this operation needs."))
        if "{" in self.path:
            errors.append((404, "Not found, including objects of another workspace or another user."))
        if self.method in _BODY_METHODS:
            errors.append((413, "Request body too large."))
            errors.append((415, "Unsupported media type."))
        if getattr(view, "throttle_classes", None):
            errors.append((429, "Rate limited; retry after the `Retry-After` header's seconds."))
        if getattr(view, "authentication_classes", None):
            errors.append((503, "PostgreSQL (or, sending a message, Redis) is unreachable: nothing was changed; "
                                "retry after the `Retry-After` header's seconds."))
        return errors
