"""Reads of agents and their versions; every one starts from a scoped manager."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from agents.models import Agent, AgentVersion
from workspaces.filters import FilterSet
from workspaces.tenancy import Scope

AGENT_ORDERING = ("name", "id")
VERSION_ORDERING = ("-version",)


class AgentFilter(FilterSet):
    slug = django_filters.CharFilter(field_name="slug", max_length=100, help_text="The agent with this slug.")

    class Meta:
        model = Agent
        fields = ["slug"]




def agent_version_list(*, scope: Scope, agent: Agent) -> QuerySet[AgentVersion]:
    return AgentVersion.objects.for_scope(scope).filter(agent=agent).order_by(*VERSION_ORDERING)
