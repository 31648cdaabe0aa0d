"""Server-rendered pages for people: login, the thread sidebar and the thread page.

Pages read through the same scoped entry points as the API (`Thread.objects.for_scope`, the chat
selectors) with the session user's Scope, inside the RLS workspace on PostgreSQL. Every write the
pages offer goes through the JSON API from the browser (session cookie + CSRF header).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import wraps
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.contrib.staticfiles.views import serve as staticfiles_serve
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from chat import selectors
from chat.models import Thread
from workspaces.authentication import (
    SESSION_WORKSPACE_KEY,
    membership_scope,
    session_membership,
    user_memberships,
)
from workspaces.ids import looks_like_id
from workspaces.models import Membership
from workspaces.tenancy import Scope, tenant_context, unique_or_none

SIDEBAR_LIMIT = 100
SEARCH_MAX = 500


class EmailAuthenticationForm(AuthenticationForm):
    """The login form: email and password; emails are stored lower-case, so typed case is ignored."""

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].widget = forms.EmailInput(
            attrs={"autofocus": True, "autocomplete": "username", "spellcheck": "false", "maxlength": 254}
        )

    def clean_username(self) -> str:
        return (self.cleaned_data.get("username") or "").strip().lower()


class LoginPage(LoginView):
    template_name = "chat/login.html"
    form_class = EmailAuthenticationForm
    redirect_authenticated_user = True


def page_reads(scope: Scope) -> AbstractContextManager[None]:
    """Where a page reads: on PostgreSQL one transaction with the RLS workspace set.

    SQLite has no RLS, and there (IMMEDIATE mode) a transaction would take the write lock and
    queue page loads behind the generation worker, as the scoped viewsets also avoid.
    """
    if connection.vendor == "postgresql":
        return tenant_context(scope.workspace_id)
    return nullcontext()


PageView = Callable[..., HttpResponse]


def scoped_page(view: PageView) -> PageView:
    """Login required; the view gets the session's Scope and runs inside its reads.

    A user with no membership gets a friendly page (403) instead of the view.
    """

    @login_required
    @never_cache
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = session_membership(request.user, request.session)
        if membership is None:
            return render(request, "chat/no_workspace.html", status=403)
        request.membership = membership
        scope = membership_scope(membership)
        with page_reads(scope):
            return view(request, scope, *args, **kwargs)

    return wrapper


def _threads(scope: Scope, **filters: str) -> list[Thread]:
    queryset = selectors.ThreadFilter(data=filters, queryset=selectors.thread_list(scope=scope), scope=scope).qs
    return list(queryset[:SIDEBAR_LIMIT])


def sidebar_context(request: HttpRequest, scope: Scope, current: Thread | None = None) -> dict[str, Any]:
    """The layout's data: the thread lists (pinned, recent, archived) and the workspace switcher."""
    q = request.GET.get("q", "")[:SEARCH_MAX]
    return {
        "q": q,
        "pinned_threads": _threads(scope, q=q, pinned="true"),
        "recent_threads": _threads(scope, q=q, pinned="false"),
        "archived_threads": _threads(scope, q=q, archived="true"),
        "current_thread": current,
        "membership": request.membership,
        "memberships": list(user_memberships(request.user)),
        "limit": SIDEBAR_LIMIT,
    }


def tool_call_view(call: dict[str, Any]) -> dict[str, str]:
    """A stored tool call as the page shows it: name, status, and pretty JSON in and out."""
    return {
        "id": str(call.get("id", "")),
        "name": str(call.get("name", "")),
        "status": str(call.get("status", "")),
        "arguments": json.dumps(call.get("arguments"), indent=2, ensure_ascii=False),
        "result": json.dumps(call.get("result"), indent=2, ensure_ascii=False),
    }


def home(request: HttpRequest) -> HttpResponse:
    return redirect("chat-index")


@scoped_page
def chat_index(request: HttpRequest, scope: Scope) -> HttpResponse:
    return render(request, "chat/index.html", sidebar_context(request, scope))


@scoped_page
def thread_page(request: HttpRequest, scope: Scope, thread_id: str) -> HttpResponse:
    thread = None
    if looks_like_id(thread_id, "thr"):
        thread = unique_or_none(Thread.objects.for_scope(scope).filter(pk=thread_id))
    if thread is None:
        # Not yours and does not exist read the same; nothing about the id is echoed.
        return render(request, "chat/not_found.html", sidebar_context(request, scope), status=404)
    history = list(selectors.message_list(scope=scope, thread=thread).order_by("position"))
    for message in history:
        message.tool_call_views = [tool_call_view(call) for call in message.tool_calls or []]
    context = sidebar_context(request, scope, current=thread)
    context["history"] = history
    return render(request, "chat/thread.html", context)


@require_POST
@login_required
def switch_workspace(request: HttpRequest) -> HttpResponse:
    """Choose the workspace the session (pages and API alike) acts in; only one of the user's own."""
    workspace_id = request.POST.get("workspace_id", "")
    if Membership.objects.filter(user_id=request.user.pk, workspace_id=workspace_id).exists():
        request.session[SESSION_WORKSPACE_KEY] = workspace_id
    return redirect("chat-index")


def static_file(request: HttpRequest, path: str) -> HttpResponse:
    """The app's own CSS and JS under daphne, which serves no static files itself.

    Files come from the apps' static folders (no collectstatic step needed); `serve` answers
    If-Modified-Since with 304, and no-cache makes browsers revalidate after an upgrade.
    """
    response = staticfiles_serve(request, path, insecure=True)
    response["Cache-Control"] = "no-cache"
    return response
