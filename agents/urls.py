from django.urls import path

from agents import views

agent_list = views.AgentViewSet.as_view({"get": "list", "post": "create"})
agent_detail = views.AgentViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
agent_versions = views.AgentVersionViewSet.as_view({"get": "list"})

# Included at "api/v1/agents" (no trailing slash), so these patterns start with "/" or are "".
urlpatterns = [
    path("", agent_list, name="agent-list"),
    path("/<str:pk>", agent_detail, name="agent-detail"),
    path("/<str:pk>/versions", agent_versions, name="agent-versions"),
]
