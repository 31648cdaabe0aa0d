"""Reads of threads and messages; every one starts from a scoped manager."""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, Q, QuerySet

from chat.models import Message, Thread
from workspaces.filters import StrictBooleanFilter
from workspaces.tenancy import Scope

THREAD_ORDERING = ("-activity_at", "-id")


class ThreadFilter(django_filters.FilterSet):
    user_id = django_filters.CharFilter(field_name="user_id", max_length=64)
    agent_id = django_filters.CharFilter(field_name="agent_id", max_length=64)
    pinned = StrictBooleanFilter()
    archived = StrictBooleanFilter(method="filter_archived")
    q = django_filters.CharFilter(method="filter_q", max_length=500, help_text="Search titles and message text.")

    class Meta:
        model = Thread
        fields = ["user_id", "agent_id", "pinned", "archived", "q"]

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
        matching_messages = Message.objects.filter(thread_id=OuterRef("pk"), content__icontains=value)
        return queryset.filter(Q(title__icontains=value) | Exists(matching_messages))


def thread_list(*, scope: Scope) -> QuerySet[Thread]:
    return Thread.objects.for_scope(scope).order_by(*THREAD_ORDERING)




def message_list(*, scope: Scope, thread: Thread) -> QuerySet[Message]:
    return Message.objects.for_scope(scope).filter(thread=thread).prefetch_related("attachments")


