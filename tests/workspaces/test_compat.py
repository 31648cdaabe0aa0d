"""What workspaces/compat.py relies on in Django's private model API: fails loudly on an upgrade
that changes it (tests/test_tenant_queries.py checks the behaviour)."""

from __future__ import annotations

import inspect

import pytest
from django.db import models
from django.db.models.deletion import Collector

from chat.models import Thread
from tests.factories import MessageFactory, ThreadFactory
from workspaces.compat import DO_UPDATE_PARAMETERS, WorkspaceCollector, prefetched
from workspaces.tenancy import tenant_context


def test_model_do_update_keeps_its_signature():
    assert tuple(inspect.signature(models.Model._do_update).parameters) == DO_UPDATE_PARAMETERS


def test_collector_keeps_the_parts_the_workspace_collector_extends():
    assert tuple(inspect.signature(Collector.related_objects).parameters) == (
        "self", "related_model", "related_fields", "objs"
    )
    collector = WorkspaceCollector(using="default", origin=None)
    assert collector.data == {} and collector.fast_deletes == [] and collector.field_updates == {}
    assert collector.delete() == (0, {})


@pytest.mark.django_db
def test_prefetched_reads_what_prefetch_related_stored(workspace):
    message = MessageFactory(thread=ThreadFactory(workspace=workspace))
    with tenant_context(workspace.pk):
        plain = Thread.objects.for_workspace(workspace.pk).get()
        fetched = Thread.objects.for_workspace(workspace.pk).prefetch_related("messages").get()
    assert prefetched(plain, "messages") is None
    assert prefetched(fetched, "messages") == [message]
