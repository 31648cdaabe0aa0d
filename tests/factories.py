"""factory-boy factories. Tenant rows are written inside their workspace's RLS context."""

from __future__ import annotations

import factory
from django.utils import timezone

from chat.models import Message, Thread
from workspaces.models import Membership, User, Workspace
from workspaces.services import api_key_create
from workspaces.tenancy import tenant_context


class TenantFactory(factory.django.DjangoModelFactory):
    """Creates the row with row-level security set to the row's own workspace."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        workspace = kwargs.get("workspace")
        workspace_id = workspace.pk if workspace is not None else kwargs["workspace_id"]
        with tenant_context(workspace_id):
            return super()._create(model_class, *args, **kwargs)


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    slug = factory.Sequence(lambda n: f"workspace-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    name = factory.Sequence(lambda n: f"Person {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.MEMBER


class ThreadFactory(TenantFactory):
    class Meta:
        model = Thread

    workspace = factory.SubFactory(WorkspaceFactory)
    user = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Thread {n}")
    title_is_auto = False


class MessageFactory(TenantFactory):
    class Meta:
        model = Message

    thread = factory.SubFactory(ThreadFactory)
    workspace = factory.LazyAttribute(lambda o: o.thread.workspace)
    position = factory.Sequence(lambda n: n + 1)
    role = Message.Role.USER
    content = factory.Sequence(lambda n: f"message {n}")
    completed_at = factory.LazyFunction(timezone.now)


def issue_key(workspace: Workspace, user: User | None = None, scopes: list[str] | None = None) -> str:
    return api_key_create(workspace=workspace, user=user, scopes=scopes).secret
