"""Reads of threads and messages; every one starts from a scoped manager."""

from __future__ import annotations

import django_filters
from django.db import connection
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


# The search page's statement (PostgreSQL, `thread_search_rows`): a thread's columns as the API
# shows them (`chat.schemas.thread_row_data`), then its sort key. The database writes the
# timestamps in the API's format (`DATETIME_FORMAT`, UTC), so none is parsed to be written again.
_API_TIME = 'to_char("chat_thread"."{}" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
_THREAD_ROW_COLUMNS = ", ".join(
    _API_TIME.format(name) if name.endswith("_at") else f'"chat_thread"."{name}"'
    for name in (
        "id", "title", "user_id", "agent_id", "system_prompt", "knowledge_document_ids", "pinned", "archived",
        "message_count", "created_at", "updated_at", "last_message_at", "metadata", "context",
    )
)


def thread_search_rows(
    *, scope: Scope, query: search.TextQuery, filters: dict, seek: tuple[list, bool] | None, count: int
) -> list[tuple]:
    """PostgreSQL: `count` rows (`chat.schemas.thread_row_data`, then activity_at) of the threads matching
    `query` and ThreadFilter's cleaned `filters`, in the list's order from `seek` (KeysetPagination.paginate)."""
    where, params = ['"chat_thread"."workspace_id" = %s'], [scope.workspace_id]
    if scope.owner_user_id is not None:
        where.append('"chat_thread"."user_id" = %s')
        params.append(scope.owner_user_id)
    for name in ("user_id", "agent_id"):  # CharFilter: an empty value filters nothing
        if filters.get(name) not in (None, ""):
            where.append(f'"chat_thread"."{name}" = %s')
            params.append(filters[name])
    if filters.get("pinned") is not None:
        where.append('"chat_thread"."pinned" = %s')
        params.append(filters["pinned"])
    where.append('"chat_thread"."archived" = %s')  # archived threads hide unless asked for
    params.append(bool(filters.get("archived")))
    match, match_params = search.thread_match_sql(scope=scope, query=query)
    where.append(match)
    params += match_params
    order = "DESC"
    if seek is not None:
        values, after = seek
        where.append('("chat_thread"."activity_at", "chat_thread"."id") ' + ("<" if after else ">") + " (%s, %s)")
        params += values
        order = "DESC" if after else "ASC"
    sql = (
        f'SELECT {_THREAD_ROW_COLUMNS}, "chat_thread"."activity_at" FROM "chat_thread" WHERE {" AND ".join(where)} '
        f'ORDER BY "chat_thread"."activity_at" {order}, "chat_thread"."id" {order} LIMIT %s'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, count])
        return cursor.fetchall()


def thread_list(*, scope: Scope) -> QuerySet[Thread]:
    return Thread.objects.for_scope(scope).order_by(*THREAD_ORDERING)


def message_list(*, scope: Scope, thread: Thread, query: search.TextQuery | None = None) -> QuerySet[Message]:
    """A thread's messages; with `query`, only those matching it."""
    attachments = Prefetch("attachments", queryset=Attachment.objects.for_workspace(scope.workspace_id))
    messages = Message.objects.for_scope(scope).filter(thread=thread).prefetch_related(attachments)
    return messages if query is None else search.messages_matching(messages, query=query)


