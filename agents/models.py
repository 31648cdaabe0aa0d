"""Agent definitions. Every change raises `version`; earlier versions are kept read-only."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from workspaces import ids
from workspaces.compat import WorkspaceScopedSaves
from workspaces.models import Workspace
from workspaces.tenancy import TenantManager

# What a version is made of: changing any of these raises Agent.version.
VERSIONED_FIELDS = ("name", "slug", "description", "instructions", "input_schema", "tools")


class Agent(WorkspaceScopedSaves):
    id = models.CharField(primary_key=True, max_length=ids.ID_MAX_LENGTH, default=ids.new_agent_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True, default="")
    instructions = models.TextField()
    input_schema = models.JSONField(default=dict, blank=True)
    tools = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = TenantManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "slug"], name="agent_workspace_slug")]

    def __str__(self) -> str:
        return self.name


class AgentVersion(WorkspaceScopedSaves):
    """A frozen copy of an agent as it was at `version` (the current one included), never edited."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, blank=True, default="")
    description = models.TextField(blank=True, default="")
    instructions = models.TextField()
    input_schema = models.JSONField(default=dict, blank=True)
    tools = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = TenantManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "version"], name="agentversion_agent_version")]
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"
