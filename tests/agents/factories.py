"""Agents are made through the service (inside their workspace's RLS context), so version 1 is kept."""

from __future__ import annotations

import factory

from agents import services
from agents.models import Agent
from tests.factories import WorkspaceFactory
from tests.knowledge.factories import workspace_scope
from workspaces.tenancy import tenant_context


class AgentFactory(factory.Factory):
    class Meta:
        model = Agent

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    instructions = "You write crisp, friendly B2B emails."
    description = ""
    input_schema = factory.LazyFunction(dict)
    tools = factory.LazyFunction(list)

    @classmethod
    def _create(cls, model_class, workspace, **kwargs):
        with tenant_context(workspace.pk):
            return services.agent_create(scope=workspace_scope(workspace.pk), **kwargs)
