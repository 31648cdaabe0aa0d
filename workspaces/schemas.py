"""Shared serializer pieces: strict bodies, exact text, bounded JSON, and the workspace schemas."""

from __future__ import annotations

import json
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from workspaces.models import ApiKey, Membership, Workspace


def contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


class ExactCharField(serializers.CharField):
    """Text stored exactly as sent: no trimming, any Unicode, but never a NUL character."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        if "\x00" in data:
            raise serializers.ValidationError("NUL characters are not allowed.")
        return super().to_internal_value(data)


class BoundedJSONField(serializers.JSONField):
    """A JSON value of a given kind with a size bound; NUL characters refused anywhere inside."""

    def __init__(self, *, kind: type | tuple = dict, max_bytes: int = 16_384, **kwargs):
        self.kind = kind
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, self.kind):
            names = {dict: "an object", list: "an array"}
            raise serializers.ValidationError(f"Must be {names.get(self.kind, 'a JSON value')}.")
        if contains_nul(value):
            raise serializers.ValidationError("NUL characters are not allowed.")
        if len(json.dumps(value, ensure_ascii=False).encode()) > self.max_bytes:
            raise serializers.ValidationError(f"Must be at most {self.max_bytes} bytes as JSON.")
        return value


# Rules simple enough to be the OpenAPI schema's `pattern` word for word, so that what the schema
# allows is exactly what is accepted: an http(s) URL, an email address; no space or control character.
HTTP_URL_PATTERN = r"^https?://[^\u0000-\u0020\u007f]+\Z"
EMAIL_PATTERN = r"^[^@\u0000-\u0020\u007f]+@[^@\u0000-\u0020\u007f]+\Z"


def http_url_field(**kwargs) -> ExactCharField:
    return ExactCharField(validators=[RegexValidator(HTTP_URL_PATTERN, "Enter an http:// or https:// URL.")], **kwargs)


def email_field(**kwargs) -> ExactCharField:
    return ExactCharField(validators=[RegexValidator(EMAIL_PATTERN, "Enter an email address.")], **kwargs)


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false: "yes", 1 or "false" as a string are refused rather than guessed."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        raise serializers.ValidationError("Must be true or false.")


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo is a 400 rather than silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown[:20]})
        return super().to_internal_value(data)


class IdField(ExactCharField):
    """A public id reference: shape-checked so a 10 KB string never becomes a lookup."""

    def __init__(self, *, prefix: str, **kwargs):
        self.prefix = prefix
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        from workspaces.ids import looks_like_id

        value = super().to_internal_value(data)
        if not looks_like_id(value, self.prefix):
            raise serializers.ValidationError(f"Must be an id starting with {self.prefix}_.")
        return value


class ApiKeySummarySchema(serializers.ModelSerializer):
    user_id = serializers.CharField(allow_null=True)

    class Meta:
        model = ApiKey
        fields = ["id", "prefix", "name", "scopes", "user_id"]


class WorkspaceSchema(serializers.ModelSerializer):
    key = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "slug", "name", "key"]

    def get_key(self, workspace) -> dict | None:
        key = self.context.get("api_key")
        return ApiKeySummarySchema(key).data if key is not None else None


class MemberSchema(serializers.Serializer):
    id = serializers.CharField(source="user.id")
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.name")
    role = serializers.CharField()

    class Meta:
        model = Membership


@extend_schema_serializer(component_name="ErrorDetail")
class ErrorDetailSchema(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable code, e.g. `not_found`, `invalid_request`.")
    message = serializers.CharField(help_text="A sentence for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        allow_null=True,
        help_text="Messages per body field when body fields are at fault (nested fields joined with dots); else null.",
    )


@extend_schema_serializer(component_name="Error")
class ErrorSchema(serializers.Serializer):
    """Every 4xx and 5xx body: `{"error": {"code", "message", "fields"}}`."""

    error = ErrorDetailSchema()
