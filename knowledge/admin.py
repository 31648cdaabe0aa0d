"""Read-only admin for support staff: documents, the brand profile and its versions, one workspace
at a time (see workspaces.admin). Edits go through the API, which keeps passages and versions."""

from __future__ import annotations

from django.contrib import admin

from knowledge.models import BrandProfile, BrandProfileVersion, Document
from workspaces.admin import ReadOnlyAdminMixin, TenantModelAdmin, WorkspaceFilter


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("title", "id", "source_url", "created_at", "updated_at")
    list_filter = (WorkspaceFilter, "updated_at")
    search_fields = ("=id", "title", "source_url")
    ordering = ("-created_at", "-id")
    fields = readonly_fields = ("id", "workspace", "title", "source_url", "tags", "body", "created_at", "updated_at")


@admin.register(BrandProfile)
class BrandProfileAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("name", "workspace", "version", "updated_at")
    ordering = ("workspace",)
    fields = readonly_fields = ("workspace", "name", "description", "voice", "facts", "version", "updated_at")


@admin.register(BrandProfileVersion)
class BrandProfileVersionAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("version", "name", "created_at")
    search_fields = ("name",)
    ordering = ("-version",)
    fields = readonly_fields = ("workspace", "version", "name", "description", "voice", "facts", "created_at")
