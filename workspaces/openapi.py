"""OpenAPI pieces: the Bearer key scheme, the one error shape on every operation, and request
schemas that say what the service accepts (no unknown fields, id shapes, no NUL characters).

`TenexAutoSchema` is meant as REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] and `postprocess` as a
SPECTACULAR_SETTINGS postprocessing hook; `ApiKeyScheme` registers itself when this module is
imported (WorkspacesConfig.ready does that).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from workspaces.ids import ID_MAX_LENGTH
from workspaces.schemas import BoundedJSONField, ErrorSchema, ExactCharField, IdField, StrictSerializer

SECURITY_SCHEME_NAME = "BearerKey"
_BODY_METHODS = {"POST", "PUT", "PATCH"}
NO_NUL = "^[^\\u0000]*$"  # what ExactCharField accepts: any text without a NUL character


def id_pattern(prefix: str) -> str:
    """The shape `workspaces.ids.looks_like_id` accepts for a public id of this kind."""
    return f"^{prefix}_[0-9A-Za-z]{{1,{ID_MAX_LENGTH - len(prefix) - 1}}}$"


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
    """AutoSchema that documents the error responses an operation can give, all as `Error`, and
    request bodies as strictly as they are validated."""

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or schema is None:
            return schema
        if isinstance(field, IdField):
            schema["pattern"] = id_pattern(field.prefix)
        elif isinstance(field, ExactCharField) and not any(isinstance(v, RegexValidator) for v in field.validators):
            schema["pattern"] = NO_NUL  # a RegexValidator's own pattern says it (and refuses NUL) itself
        elif isinstance(field, BoundedJSONField):
            kind = "array" if field.kind is list else "object"
            schema = {k: v for k, v in schema.items() if k in ("description", "readOnly", "writeOnly")}
            schema.update({"type": kind}, **({"items": {}} if kind == "array" else {"additionalProperties": {}}))
            schema["description"] = (
                (schema.get("description", "") + " ").lstrip()
                + f"At most {field.max_bytes} bytes as JSON; no NUL character in any key or string."
            )
            if field.allow_null:
                schema["nullable"] = True
        return schema

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False  # an unknown field is a 400
            for name, field_schema in schema.get("properties", {}).items():
                schema["properties"][name] = _blank_or_text(field_schema)
        return schema

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
        if self.method in _BODY_METHODS or self._is_list_view() or self._has_query_or_header_parameters():
            errors.append((400, "Invalid body, query parameter or header; `fields` names each offending field."))
        if getattr(view, "authentication_classes", None):
            errors.append((401, "Missing, malformed, unknown, revoked or expired API key (one body for all)."))
        if getattr(view, "permission_classes", None):
            errors.append((403, "The API key lacks the scope this operation needs."))
        if "{" in self.path:
            errors.append((404, "Not found, including objects of another workspace or another user."))
        if self.method in _BODY_METHODS:
            errors.append((413, "Request body too large."))
            errors.append((415, "Unsupported media type."))
        if self._negotiates_content():
            errors.append((406, "The `Accept` header names no type this operation answers with."))
        if getattr(view, "throttle_classes", None):
            errors.append((429, "Rate limited; retry after the `Retry-After` header's seconds."))
        if getattr(view, "authentication_classes", None):
            errors.append((503, "PostgreSQL (or, sending a message, Redis) is unreachable: nothing was changed; "
                                "retry after the `Retry-After` header's seconds."))
        return errors

    def _has_query_or_header_parameters(self) -> bool:
        return any(
            getattr(parameter, "location", None) in ("query", "header")
            for parameter in self.get_override_parameters()
        )

    def _negotiates_content(self) -> bool:
        """Whether DRF's negotiation runs (and may answer 406); views that pick their own answer skip it."""
        from rest_framework.views import APIView

        return type(self.view).perform_content_negotiation is APIView.perform_content_negotiation


def _blank_or_text(schema: dict) -> dict:
    """drf-spectacular writes a blank-allowed text field with a pattern as `oneOf: [text, ""]`; ""
    matches both when the pattern takes it too (NO_NUL does), which `oneOf` forbids: keep the one."""
    choices = schema.get("oneOf")
    if (
        isinstance(choices, list) and len(choices) == 2 and choices[1] == {"type": "string", "maxLength": 0}
        and re.fullmatch(choices[0].get("pattern", "x"), "") is not None and not choices[0].get("minLength")
    ):
        return {**{k: v for k, v in schema.items() if k != "oneOf"}, **choices[0]}
    return schema


def _path_parameter_pattern(path: str, name: str) -> str | None:
    """The id shape of a path parameter, from the collection it names: `/threads/{id}` is a thread id."""
    segments = path.split("/")
    position = segments.index("{" + name + "}")
    return _ID_PREFIXES.get(segments[position - 1])


_ID_PREFIXES = {"threads": "thr", "messages": "msg", "documents": "doc", "agents": "agt"}


def _one_of_by_type(component: dict) -> dict:
    """An object whose `type` decides which one other property it carries, as `oneOf` branches."""
    properties = component["properties"]
    branches = []
    for kind, field in _ATTACHMENT_KINDS.items():
        branches.append({
            "type": "object",
            "properties": {"type": {"type": "string", "enum": [kind]}, field: properties[field]},
            "required": ["type", field],
            "additionalProperties": False,
        })
    return {"oneOf": branches, "description": "An attachment: `type` and the one reference that type takes."}


_ATTACHMENT_KINDS = {"knowledge_document": "document_id", "lead": "lead", "file": "file_id"}


def postprocess(result: dict, generator, request, public) -> dict:
    """SPECTACULAR_SETTINGS postprocessing hook: path ids carry their shape (`thr_…`), as the service
    checks it before any lookup; an attachment takes exactly the reference its type names."""
    schemas = result.get("components", {}).get("schemas", {})
    if "AttachmentInputSchemaRequest" in schemas:
        schemas["AttachmentInputSchemaRequest"] = _one_of_by_type(schemas["AttachmentInputSchemaRequest"])
    for path, item in result.get("paths", {}).items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "path":
                    prefix = _path_parameter_pattern(path, parameter["name"])
                    if prefix is not None:
                        parameter["schema"] = {"type": "string", "pattern": id_pattern(prefix)}
                elif parameter.get("in") == "query" and schema.get("type") == "string" and not (
                    {"pattern", "enum", "format"} & set(schema)
                ):
                    schema["pattern"] = NO_NUL  # Django and DRF refuse NUL in any text they read
    return result
