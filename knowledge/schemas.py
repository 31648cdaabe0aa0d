"""Schemas of the knowledge API: strict request bodies and the document and brand profile objects."""

from __future__ import annotations

from rest_framework import serializers

from knowledge.models import BrandProfile, BrandProfileVersion, Document
from workspaces.schemas import ExactCharField, StrictSerializer, http_url_field

TITLE_MAX = 300
BODY_MAX = 1_000_000
URL_MAX = 2000
TAG_MAX = 100
MAX_TAGS = 50
FACT_MAX = 2000
MAX_FACTS = 200
SEARCH_QUERY_MAX = 500


# --- requests ---------------------------------------------------------------------------------
class DocumentCreateSchema(StrictSerializer):
    title = ExactCharField(max_length=TITLE_MAX)
    body = ExactCharField(max_length=BODY_MAX, help_text="Plain text or Markdown; split into passages for search.")
    source_url = http_url_field(required=False, allow_blank=True, max_length=URL_MAX)
    tags = serializers.ListField(child=ExactCharField(max_length=TAG_MAX), required=False, max_length=MAX_TAGS)


class BrandProfileInputSchema(StrictSerializer):
    """PUT replaces the whole profile (fields left out become empty); PATCH changes only those sent."""

    name = ExactCharField(required=False, allow_blank=True, max_length=200)
    description = ExactCharField(required=False, allow_blank=True, max_length=20_000)
    voice = ExactCharField(required=False, allow_blank=True, max_length=10_000)
    facts = serializers.ListField(
        child=ExactCharField(max_length=FACT_MAX), required=False, max_length=MAX_FACTS,
        help_text="Short statements the assistant may rely on, e.g. \"Founded in 2019 in Lisbon.\"",
    )


# --- responses --------------------------------------------------------------------------------
class DocumentSchema(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    source_url = serializers.CharField(help_text="The http(s) URL the document came from, or \"\" when none was given.")

    class Meta:
        model = Document
        fields = ["id", "object", "title", "body", "source_url", "tags", "created_at", "updated_at"]
        read_only_fields = fields

    def get_object(self, document) -> str:
        return "document"


class BrandProfileSchema(serializers.ModelSerializer):
    version = serializers.IntegerField(help_text="Rises on every change; 0 before the profile is first saved.")
    updated_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        model = BrandProfile
        fields = ["name", "description", "voice", "facts", "version", "updated_at"]
        read_only_fields = fields


class BrandProfileVersionSchema(serializers.ModelSerializer):
    class Meta:
        model = BrandProfileVersion
        fields = ["version", "name", "description", "voice", "facts", "created_at"]
        read_only_fields = fields
