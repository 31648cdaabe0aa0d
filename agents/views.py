"""Thin agent endpoints: CRUD of agent definitions and their version history."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.response import Response

from agents import selectors, services
from agents.models import Agent, AgentVersion
from agents.schemas import AgentCreateSchema, AgentSchema, AgentVersionSchema
from workspaces.viewsets import ScopedGenericViewSet


class AgentsViewSet(ScopedGenericViewSet):
    scope_family = "agents"

    def get_agent(self, agent_id: str) -> Agent:
        return self.scoped_object_or_404(Agent, agent_id, "agt")


@extend_schema_view(
    list=extend_schema(summary="List agents by name"),
    retrieve=extend_schema(summary="Get an agent (its current version)"),
    destroy=extend_schema(summary="Delete an agent and its versions; bound threads keep their snapshot"),
)
class AgentViewSet(mixins.ListModelMixin, AgentsViewSet):
    model = Agent
    serializer_class = AgentSchema
    filter_backends = [DjangoFilterBackend]
    filterset_class = selectors.AgentFilter
    ordering = selectors.AGENT_ORDERING

    def refine_queryset(self, queryset):
        return queryset.order_by(*selectors.AGENT_ORDERING)

    @extend_schema(summary="Create an agent (version 1)", request=AgentCreateSchema, responses={201: AgentSchema})
    def create(self, request):
        body = AgentCreateSchema(data=request.data)
        body.is_valid(raise_exception=True)
        agent = services.agent_create(scope=self.scope, **body.validated_data)
        return Response(AgentSchema(agent).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(AgentSchema(self.get_agent(pk)).data)

    @extend_schema(
        summary="Change an agent; the version rises when anything changes",
        request=AgentCreateSchema,
        responses=AgentSchema,
    )
    def partial_update(self, request, pk=None):
        agent = self.get_agent(pk)
        body = AgentCreateSchema(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        agent = services.agent_update(scope=self.scope, agent=agent, changes=dict(body.validated_data))
        return Response(AgentSchema(agent).data)

    def destroy(self, request, pk=None):
        services.agent_delete(scope=self.scope, agent=self.get_agent(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentVersionViewSet(AgentsViewSet):
    model = AgentVersion
    serializer_class = AgentVersionSchema
    ordering = selectors.VERSION_ORDERING

    @extend_schema(summary="An agent's versions, newest first (read-only)", responses=AgentVersionSchema(many=True))
    def list(self, request, pk=None):
        queryset = selectors.agent_version_list(scope=self.scope, agent=self.get_agent(pk))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(AgentVersionSchema(page, many=True).data)
