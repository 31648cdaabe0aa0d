"""Writes racing a delete of their object, on real PostgreSQL: a 404 (or the delete taking the write
with it), never a 500.

Each test holds one side's transaction open in the test's own thread, sends the other side as a
request from a second thread, waits until PostgreSQL shows that request waiting on a row lock, and
only then commits: the interleaving that failed is forced every time, not left to chance.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from django.db import connection

from agents import services as agent_services
from agents.models import Agent, AgentVersion
from chat import services
from chat.models import Message, Thread
from knowledge.models import Document
from tests.helpers import assert_not_found
from workspaces.tenancy import Scope, tenant_context

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = "/api/v1/chat/threads"


def in_thread(pool: ThreadPoolExecutor, call, *args, **kwargs) -> Future:
    """Run a request on another thread (its own database connection, closed when it is done)."""

    def run():
        from django.db import connection as own

        try:
            return call(*args, **kwargs)
        finally:
            own.close()

    return pool.submit(run)


def wait_until_a_request_waits_on_a_lock(timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # statistics views are cached per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "the request never waited on the row lock"
            time.sleep(0.02)


def race(workspace_id: str, holder, request_call):
    """`holder()` runs in a transaction held open until `request_call` waits on its lock; then
    commits. Returns the request's response."""
    pool = ThreadPoolExecutor(1)
    try:
        with tenant_context(workspace_id):
            holder()
            pending = in_thread(pool, request_call)
            wait_until_a_request_waits_on_a_lock()
        return pending.result(timeout=30)
    finally:
        pool.shutdown(wait=True)


@pytest.fixture
def scope(workspace, alice) -> Scope:
    return Scope(workspace_id=workspace.pk, user_id=alice.id)


@pytest.fixture
def thread_id(alice) -> str:
    response = alice.client.post(THREADS, {"title": "Q4"}, format="json")
    assert response.status_code == 201
    return response.json()["id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("patch", "", {"title": "renamed"}), ("post", "/messages", {"content": "hello"})],
    ids=["patch", "send"],
)
def test_a_write_racing_a_delete_of_its_thread_is_404(alice, workspace, scope, thread_id, method, path, body):
    def delete():
        services.thread_delete(scope=scope, thread=Thread.objects.for_scope(scope).get(pk=thread_id))

    write = getattr(alice.client, method)
    response = race(workspace.pk, delete, lambda: write(f"{THREADS}/{thread_id}{path}", body, format="json"))
    assert_not_found(response)
    with tenant_context(workspace.pk):
        assert not Message.objects.filter(thread_id=thread_id).exists()


def test_delete_racing_a_send_deletes_the_sent_message_too(alice, workspace, scope, thread_id):
    def send():
        thread = Thread.objects.for_scope(scope).get(pk=thread_id)
        services.message_append(scope=scope, thread=thread, role="user", content="sent while deleting")

    response = race(workspace.pk, send, lambda: alice.client.delete(f"{THREADS}/{thread_id}"))
    assert response.status_code == 204, response.content
    with tenant_context(workspace.pk):
        assert not Thread.objects.filter(pk=thread_id).exists()
        assert not Message.objects.filter(thread_id=thread_id).exists()


def test_document_patch_racing_its_delete_is_404(alice, workspace):
    document = alice.client.post(
        "/api/v1/knowledge/documents", {"title": "Pricing", "body": "Pro costs 49."}, format="json"
    ).json()

    def delete():
        Document.objects.for_workspace(workspace.pk).filter(pk=document["id"]).delete()

    response = race(
        workspace.pk, delete,
        lambda: alice.client.patch(
            f"/api/v1/knowledge/documents/{document['id']}", {"body": "Pro costs 59."}, format="json"
        ),
    )
    assert_not_found(response)


def test_agent_delete_racing_an_update_deletes_the_new_version_too(alice, workspace, scope):
    agent_id = alice.client.post(
        "/api/v1/agents", {"name": "Qualifier", "instructions": "Qualify leads."}, format="json"
    ).json()["id"]

    def update():
        agent = Agent.objects.for_workspace(workspace.pk).get(pk=agent_id)
        agent_services.agent_update(scope=scope, agent=agent, changes={"instructions": "Qualify leads, briefly."})

    response = race(workspace.pk, update, lambda: alice.client.delete(f"/api/v1/agents/{agent_id}"))
    assert response.status_code == 204, response.content
    with tenant_context(workspace.pk):
        assert not AgentVersion.objects.filter(agent_id=agent_id).exists()
