"""Fixtures of the support admin's tests: a signed-in superuser and threads in two workspaces."""

from __future__ import annotations

import pytest
from django.test import Client

from chat import services
from tests.factories import ThreadFactory
from workspaces.models import User
from workspaces.tenancy import Scope, tenant_context

STAFF_PASSWORD = "correct horse battery staple"


def signed_in(email: str, password: str = STAFF_PASSWORD) -> Client:
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": email, "password": password})
    assert response.status_code == 302 and response["Location"] == "/admin/", response.content[:500]
    return client


@pytest.fixture
def staff() -> Client:
    User.objects.create_superuser(email="support@tenex.test", password=STAFF_PASSWORD)
    return signed_in("support@tenex.test")


@pytest.fixture
def alice_thread(workspace, alice):
    """Alice's thread with three messages, appended in this order."""
    scope = Scope(workspace_id=workspace.pk, user_id=alice.id)
    thread = ThreadFactory(workspace=workspace, user=alice.user, title="Renewal for Initech")
    with tenant_context(workspace.pk):
        for content in ("first: hello", "second: the quote", "third: thanks"):
            services.message_append(scope=scope, thread=thread, role="user", content=content)
    return thread


@pytest.fixture
def outsider_thread(other_workspace, outsider):
    return ThreadFactory(workspace=other_workspace, user=outsider.user, title="Globex secret plans")
