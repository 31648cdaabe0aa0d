"""Reads of threads and messages; every one starts from a scoped manager."""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, QuerySet

from chat import search
from chat.models import Attachment, Message, Thread
from workspaces.filters import FilterSet, StrictBooleanFilter
from workspaces.tenancy import Scope

THREAD_ORDERING = ("-activity_at", "-id")


class ThreadFilter(FilterSet):
    user_id = django_filters.CharFilter(field_name="user_id", max_length=64)
    agent_id = django_filters.CharFilter(field_name="agent_id", max_length=64)
    pinned = StrictBooleanFilter()
    archived = StrictBooleanFilter(method="filter_archived")
    q = django_filters.CharFilter(
        method="filter_q",
        max_length=500,
        help_text=(
            "Full-text search of titles and message text: every word must match, each as a word prefix "
            "(`pric` finds \"pricing\"). Results keep the list's order and carry a `search` object."
        ),
    )

    class Meta:
        model = Thread
        fields = ["user_id", "agent_id", "pinned", "archived", "q"]

    def __init__(self, *args, scope: Scope | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        auth = getattr(self.request, "auth", None)
        # Search reads the workspace's text search configuration: the API's request carries the
        # scope, other callers (the web pages) pass it.
        self.scope = scope if scope is not None else auth if isinstance(auth, Scope) else None

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if self.form.cleaned_data.get("archived") is None:
            queryset = queryset.filter(archived=False)  # archived threads hide unless asked for
        return queryset

    def filter_archived(self, queryset, name, value):
        return queryset if value is None else queryset.filter(archived=value)

    def filter_q(self, queryset, name, value):
        if not value:
            return queryset
        if self.scope is None:
            raise TypeError("ThreadFilter needs the scope to search (a request with one, or scope=)")
        query = search.text_query(self.scope, value)
        if query is None:
            return queryset.none()  # no word to look for: nothing matches
        return search.threads_matching(queryset, scope=self.scope, query=query)


def thread_list(*, scope: Scope) -> QuerySet[Thread]:
    return Thread.objects.for_scope(scope).order_by(*THREAD_ORDERING)


def message_list(*, scope: Scope, thread: Thread, query: search.TextQuery | None = None) -> QuerySet[Message]:
    """A thread's messages; with `query`, only those matching it."""
    attachments = Prefetch("attachments", queryset=Attachment.objects.for_workspace(scope.workspace_id))
    messages = Message.objects.for_scope(scope).filter(thread=thread).prefetch_related(attachments)
    return messages if query is None else search.messages_matching(messages, query=query)


