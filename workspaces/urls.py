from django.urls import path

from workspaces import views

urlpatterns = [
    path("", views.WorkspaceViewSet.as_view({"get": "retrieve"}), name="workspace-detail"),
    path("/members", views.MemberViewSet.as_view({"get": "list"}), name="workspace-members"),
]
