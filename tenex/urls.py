from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from workspaces.admin_find import find_view
from workspaces.views import DocsView, RedocView, SchemaView, healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("favicon.ico", RedirectView.as_view(url=static("chat/favicon.svg"), permanent=True)),
    path("admin/find/", admin.site.admin_view(find_view), name="admin-find"),
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SchemaView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file (no inline script, for the CSP).
    path("api/docs/", DocsView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", RedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/workspace", include("workspaces.urls")),
    path("api/v1/chat/", include("chat.urls")),
    path("api/v1/knowledge/", include("knowledge.urls")),
    path("api/v1/agents", include("agents.urls")),
    path("", include("chat.web_urls")),
]

handler400 = "workspaces.errors.handler400"
handler403 = "workspaces.errors.handler403"
handler404 = "workspaces.errors.handler404"
handler500 = "workspaces.errors.handler500"
