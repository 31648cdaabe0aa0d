"""What a send asks of the database: its thread read once and locked, and nothing it wrote lost."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.test_tenant_queries import wait_for_replies

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = "/api/v1/chat/threads"


@pytest.fixture(autouse=True)
def fast_tokens(settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 0


@pytest.fixture
def thread(alice):
    return alice.client.post(THREADS, {"title": ""}, format="json").json()


def thread_reads(queries) -> list[str]:
    statements = [q["sql"] for q in queries.captured_queries]
    return [sql for sql in statements if sql.startswith("SELECT") and "FROM chat_thread" in sql]


def test_a_send_reads_its_thread_once_locked_and_moves_it(alice, thread, workspace):
    with CaptureQueriesContext(connection) as queries:
        sent = alice.client.post(
            f"{THREADS}/{thread['id']}/messages", {"content": "Tell me about   pricing\nplans"}, format="json"
        )
    assert sent.status_code == 202, sent.content
    reads = thread_reads(queries)
    if connection.vendor == "postgresql":
        assert len(reads) == 1 and reads[0].endswith("FOR UPDATE"), reads
    wait_for_replies(workspace.pk)
    after = alice.client.get(f"{THREADS}/{thread['id']}").json()
    assert after["message_count"] == 2
    assert after["title"] == "Tell me about pricing plans"  # the automatic title, from the first message
    assert after["last_message_at"] >= sent.json()["assistant_message"]["created_at"]
    history = alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"]
    assert [(m["role"], m["status"]) for m in history] == [("user", "complete"), ("assistant", "complete")]
    assert history[0]["content"] == "Tell me about   pricing\nplans"  # stored exactly as sent
    assert history[1]["content"] and history[1]["completed_at"] and history[1]["usage"]["output_tokens"] > 0


def test_with_an_idempotency_key_the_in_flight_check_comes_before_the_thread_lock(alice, thread, workspace):
    with CaptureQueriesContext(connection) as queries:
        sent = alice.client.post(
            f"{THREADS}/{thread['id']}/messages", {"content": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
        )
    assert sent.status_code == 202, sent.content
    statements = [q["sql"] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        advisory = next(i for i, sql in enumerate(statements) if "pg_try_advisory_xact_lock" in sql)
        locked = next(i for i, sql in enumerate(statements) if "FROM chat_thread" in sql and sql.endswith("FOR UPDATE"))
        assert advisory < locked, statements
    wait_for_replies(workspace.pk)
    again = alice.client.post(
        f"{THREADS}/{thread['id']}/messages", {"content": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert again.status_code == 202 and again.json() == sent.json()
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 2
