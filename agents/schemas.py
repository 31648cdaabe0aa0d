"""Schemas of the agents API: strict request bodies and the agent and agent version objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.validators import RegexValidator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for
from rest_framework import serializers

from agents.models import VERSIONED_FIELDS, Agent, AgentVersion
from agents.tools import registered_tools
from workspaces.schemas import BoundedJSONField, ExactCharField, StrictSerializer

NAME_MAX = 200
SLUG_MAX = 100
DESCRIPTION_MAX = 2000
INSTRUCTIONS_MAX = 32_000
INPUT_SCHEMA_MAX_BYTES = 32_768
MAX_TOOLS = 20

slug_validator = RegexValidator(
    r"^[a-z0-9]+(?:[-_][a-z0-9]+)*\Z", "Use lowercase letters, digits, and single - or _ between them."
)


def _refs(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def input_schema_problems(schema: dict) -> list[str]:
    """Why `schema` cannot be an agent's input schema: it must be {} or a valid object schema."""
    if schema == {}:
        return []
    if schema.get("type") != "object":
        return ['Must be {} or a JSON Schema of an object ({"type": "object", ...}).']
    if "$schema" in schema and not isinstance(schema["$schema"], str):
        return ["$schema must be a string."]
    if any(not isinstance(ref, str) or not ref.startswith("#") for ref in _refs(schema)):
        return ['Only local references ("$ref": "#/...") are allowed.']
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        message = exc.message if len(exc.message) <= 300 else exc.message[:299] + "…"
        return [f"Not a valid JSON Schema{f' at {where}' if where else ''}: {message}"]
    return []


class InputSchemaField(BoundedJSONField):
    def __init__(self, **kwargs):
        kwargs.setdefault(
            "help_text",
            "JSON Schema of the input a run_agent call must send: {} (anything) or an object schema.",
        )
        super().__init__(kind=dict, max_bytes=INPUT_SCHEMA_MAX_BYTES, **kwargs)

    def to_internal_value(self, data):
        schema = super().to_internal_value(data)
        problems = input_schema_problems(schema)
        if problems:
            raise serializers.ValidationError(problems)
        return schema


# --- requests ---------------------------------------------------------------------------------
class AgentCreateSchema(StrictSerializer):
    name = ExactCharField(max_length=NAME_MAX)
    slug = ExactCharField(
        required=False,
        max_length=SLUG_MAX,
        validators=[slug_validator],
        help_text="Unique in the workspace; derived from the name when left out.",
    )
    description = ExactCharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX)
    instructions = ExactCharField(max_length=INSTRUCTIONS_MAX, help_text="The agent's system prompt.")
    input_schema = InputSchemaField(required=False)
    tools = serializers.ListField(
        child=ExactCharField(max_length=100),
        required=False,
        max_length=MAX_TOOLS,
        help_text="Names of registered tools the agent may call in a thread bound to it.",
    )

    def validate_tools(self, value: list[str]) -> list[str]:
        known = registered_tools()
        unknown = [name for name in value if name not in known]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown tools: {', '.join(unknown[:5])}. Registered tools: {', '.join(sorted(known))}."
            )
        return list(dict.fromkeys(value))


# --- responses --------------------------------------------------------------------------------


class AgentSchema(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    version = serializers.IntegerField(help_text="Rises on every change; earlier versions are kept.")

    class Meta:
        model = Agent
        fields = ["id", "object", *VERSIONED_FIELDS, "version", "created_at", "updated_at"]
        read_only_fields = fields

    def get_object(self, agent) -> str:
        return "agent"


class AgentVersionSchema(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    agent_id = serializers.CharField()

    class Meta:
        model = AgentVersion
        fields = ["object", "agent_id", "version", *VERSIONED_FIELDS, "created_at"]
        read_only_fields = fields

    def get_object(self, version) -> str:
        return "agent_version"
