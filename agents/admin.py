"""Read-only admin for support staff: agents with their version history inline, one workspace at a
time (see workspaces.admin). Edits go through the API, which keeps every version."""

from __future__ import annotations

from django.contrib import admin

from agents.models import VERSIONED_FIELDS, Agent, AgentVersion
from workspaces.admin import ReadOnlyAdminMixin, TenantModelAdmin, WorkspaceFilter


class AgentVersionInline(ReadOnlyAdminMixin, admin.StackedInline):
    model = AgentVersion
    extra = 0
    ordering = ("-version",)
    fields = readonly_fields = ("version", *VERSIONED_FIELDS, "created_at")


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdminMixin, TenantModelAdmin):
    list_display = ("name", "slug", "id", "version", "updated_at")
    list_filter = (WorkspaceFilter, "updated_at")
    search_fields = ("=id", "name", "slug")
    ordering = ("name", "id")
    fields = readonly_fields = ("id", "workspace", "version", *VERSIONED_FIELDS, "created_at", "updated_at")
    inlines = (AgentVersionInline,)
