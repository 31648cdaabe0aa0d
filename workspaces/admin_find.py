"""The admin's "Find" box: paste any public id (`thr_`, `msg_`, `usr_`, `key_`, `doc_`, `agt_`, `ws_`, ...),
an API key or its prefix, a user's email or a workspace slug, and land on that object's admin page,
whatever its workspace (tenant objects are located with `workspaces.locate`)."""

from __future__ import annotations

from functools import cache

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from workspaces.ids import ID_MAX_LENGTH
from workspaces.keys import KEY_PREFIX
from workspaces.locate import is_tenant_model, object_workspace_id
from workspaces.models import User, Workspace
from workspaces.services import api_key_find

QUERY_MAX = 254


@cache
def models_by_id_prefix() -> dict[str, type[models.Model]]:
    """Admin-registered models whose primary key is a public id, by the id's prefix (`thr` -> Thread)."""
    found = {}
    for model in apps.get_models():
        pk = model._meta.pk
        if admin.site.is_registered(model) and isinstance(pk, models.CharField) and callable(pk.default):
            sample = str(pk.default())
            if "_" in sample:
                found[sample.split("_", 1)[0]] = model
    return found


def change_url(model: type[models.Model], pk: str) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[quote(pk)])


def find_target(query: str) -> str | None:
    """The admin page `query` names, or None."""
    if "@" in query:
        user = User.objects.filter(email__iexact=query).first()
        return change_url(User, user.pk) if user else None
    if query.startswith(KEY_PREFIX):
        api_key = api_key_find(query)
        return change_url(type(api_key), api_key.pk) if api_key else None
    prefix = query.split("_", 1)[0] if "_" in query else ""
    model = models_by_id_prefix().get(prefix)
    if model is not None and len(query) <= ID_MAX_LENGTH and query.isascii():
        if is_tenant_model(model):
            exists = object_workspace_id(model, query) is not None
        else:
            exists = model._base_manager.filter(pk=query).exists()
        return change_url(model, query) if exists else None
    workspace = Workspace.objects.filter(slug=query.lower()).first()
    return change_url(Workspace, workspace.pk) if workspace else None


def find_view(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:QUERY_MAX]
    target = find_target(query) if query else None
    if target is not None:
        return HttpResponseRedirect(target)
    if query:
        messages.warning(request, f"Nothing found for “{query}”. Paste a public id (thr_…, msg_…, usr_…, key_…, "
                                  "doc_…, agt_…, ws_…), an API key or its prefix, an email or a workspace slug.")
    return HttpResponseRedirect(reverse("admin:index"))
