"""Documents are made through the service (inside their workspace's RLS context), so they have passages."""

from __future__ import annotations

import factory

from knowledge import services
from knowledge.models import Document
from tests.factories import WorkspaceFactory
from workspaces.tenancy import Scope, tenant_context


def workspace_scope(workspace_id: str) -> Scope:
    return Scope(workspace_id=workspace_id, user_id=None, is_service=True)


class DocumentFactory(factory.Factory):
    class Meta:
        model = Document

    workspace = factory.SubFactory(WorkspaceFactory)
    title = factory.Sequence(lambda n: f"Document {n}")
    body = factory.Sequence(lambda n: f"Body of document {n}.")
    source_url = ""
    tags = factory.LazyFunction(list)

    @classmethod
    def _create(cls, model_class, workspace, **kwargs):
        with tenant_context(workspace.pk):
            return services.document_create(scope=workspace_scope(workspace.pk), **kwargs)
