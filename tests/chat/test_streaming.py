"""Sending messages and streaming replies in one process (PostgreSQL + Redis stream log)."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Message
from tests.conftest import make_client
from tests.helpers import (
    assert_error,
    assert_not_found,
    joined_deltas,
    parse_sse,
    streamed_body,
)
from tests.test_tenant_queries import wait_for_replies
from workspaces.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = "/api/v1/chat/threads"


@pytest.fixture(autouse=True)
def fast_tokens(settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 0


@pytest.fixture
def thread(alice):
    return alice.client.post(THREADS, {"title": "Launch", "system_prompt": "You write B2B copy."}, format="json").json()


def send(client, thread_id, content="How should we price the Pro plan?", stream=False, **headers):
    extra = {"HTTP_ACCEPT": "text/event-stream"} if stream else {}
    extra.update(headers)
    return client.post(f"{THREADS}/{thread_id}/messages", {"content": content}, format="json", **extra)


def stream(client, thread_id, message_id, **headers):
    return client.get(f"{THREADS}/{thread_id}/messages/{message_id}/stream", **headers)


def wait_final(client, thread_id, message_id, timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = client.get(f"{THREADS}/{thread_id}/messages?order=desc&limit=5").json()["results"]
        found = next(m for m in messages if m["id"] == message_id)
        if found["status"] != "streaming":
            return found
        time.sleep(0.05)
    raise AssertionError("reply did not finish")


def test_send_with_accept_event_stream_streams_the_reply(alice, thread):
    response = send(alice.client, thread["id"], stream=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache" and response["X-Accel-Buffering"] == "no"
    body = streamed_body(response)
    assert body.startswith(b"retry: ")
    events = parse_sse(body)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["data"]["seq"] == e["id"] and e["data"]["type"] == e["event"] for e in events)
    assert events[-1]["event"] == "done"
    assert {e["data"]["thread_id"] for e in events} == {thread["id"]}
    tool_events = [e["data"]["tool_call"] for e in events if e["event"] == "tool_call"]
    assert [(t["name"], t["status"]) for t in tool_events] == [
        ("search_knowledge", "running"), ("search_knowledge", "complete")
    ]
    assert tool_events[0]["arguments"] == {"query": "How should we price the Pro plan?"}
    final = events[-1]["data"]["message"]
    assert final["status"] == "complete" and final["role"] == "assistant"
    assert joined_deltas(events) == final["content"] and final["content"]
    assert final["usage"]["output_tokens"] > 0
    assert final["tool_calls"][0]["status"] == "complete"

    history = alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "How should we price the Pro plan?"
    assert history[1] == final
    refreshed = alice.client.get(f"{THREADS}/{thread['id']}").json()
    assert refreshed["message_count"] == 2
    assert refreshed["last_message_at"] == final["completed_at"]


def test_send_without_event_stream_is_202_and_the_stream_replays(alice, thread):
    response = send(alice.client, thread["id"], HTTP_ACCEPT="*/*")
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"user_message", "assistant_message", "stream_url"}
    assert body["user_message"]["status"] == "complete"
    assert body["assistant_message"]["status"] == "streaming"
    reply_id = body["assistant_message"]["id"]
    assert body["stream_url"].endswith(f"/api/v1/chat/threads/{thread['id']}/messages/{reply_id}/stream")
    events = parse_sse(streamed_body(stream(alice.client, thread["id"], reply_id)))
    assert events[-1]["event"] == "done"
    assert joined_deltas(events) == events[-1]["data"]["message"]["content"]


def test_resume_at_twenty_random_points_has_no_gap_and_no_duplicate(alice, thread):
    reply_id = send(alice.client, thread["id"]).json()["assistant_message"]["id"]
    full = parse_sse(streamed_body(stream(alice.client, thread["id"], reply_id)))
    last = full[-1]["id"]
    points = random.Random(7).sample(range(0, last), min(20, last))
    for point in points:
        via_header = parse_sse(
            streamed_body(stream(alice.client, thread["id"], reply_id, HTTP_LAST_EVENT_ID=str(point)))
        )
        assert [e["id"] for e in via_header] == list(range(point + 1, last + 1))
        assert full[:point] + via_header == full
    via_query = alice.client.get(f"{THREADS}/{thread['id']}/messages/{reply_id}/stream?last_event_id=2")
    assert parse_sse(streamed_body(via_query)) == full[2:]


def test_resume_after_the_last_event_is_204_and_garbage_is_400(alice, thread):
    reply_id = send(alice.client, thread["id"]).json()["assistant_message"]["id"]
    last = parse_sse(streamed_body(stream(alice.client, thread["id"], reply_id)))[-1]["id"]
    assert stream(alice.client, thread["id"], reply_id, HTTP_LAST_EVENT_ID=str(last)).status_code == 204
    assert stream(alice.client, thread["id"], reply_id, HTTP_LAST_EVENT_ID=str(last + 50)).status_code == 204
    for garbage in ("-1", "abc", "1.5", "9" * 40, "１"):
        assert_error(stream(alice.client, thread["id"], reply_id, HTTP_LAST_EVENT_ID=garbage), 400)


def test_cancel_keeps_partial_content_and_ends_with_done(alice, thread, settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 40
    reply_id = send(alice.client, thread["id"]).json()["assistant_message"]["id"]
    time.sleep(0.6)
    response = alice.client.post(f"{THREADS}/{thread['id']}/messages/{reply_id}/cancel")
    assert response.status_code == 200, response.content
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["completed_at"]
    events = parse_sse(streamed_body(stream(alice.client, thread["id"], reply_id)))
    assert events[-1]["event"] == "done"
    assert events[-1]["data"]["message"]["status"] == "cancelled"
    assert joined_deltas(events) == cancelled["content"]
    again = alice.client.post(f"{THREADS}/{thread['id']}/messages/{reply_id}/cancel")
    assert again.status_code == 200 and again.json() == cancelled


def test_a_cancel_mark_stops_the_reply_even_when_its_notice_is_missed(alice, thread, settings):
    """The producer's appends see the cancel mark in Redis: a cancel whose pub/sub notice never
    reached the producing process (here: only the mark is set) still stops the reply."""
    import redis

    from chat.stream.log import cancel_key

    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 40
    reply_id = send(alice.client, thread["id"]).json()["assistant_message"]["id"]
    time.sleep(0.5)
    redis.Redis.from_url(settings.REDIS_URL).set(cancel_key(reply_id), "1", ex=60)
    final = wait_final(alice.client, thread["id"], reply_id, timeout=5)
    assert final["status"] == "cancelled"
    events = parse_sse(streamed_body(stream(alice.client, thread["id"], reply_id)))
    assert events[-1]["event"] == "done" and events[-1]["data"]["message"]["status"] == "cancelled"
    assert joined_deltas(events) == final["content"]
    assert final["content"]  # what was produced before the mark was seen is kept


def test_cancel_of_a_finished_reply_changes_nothing(alice, thread):
    reply_id = send(alice.client, thread["id"]).json()["assistant_message"]["id"]
    final = wait_final(alice.client, thread["id"], reply_id)
    response = alice.client.post(f"{THREADS}/{thread['id']}/messages/{reply_id}/cancel")
    assert response.status_code == 200 and response.json() == final


def test_idempotent_retry_replays_and_creates_nothing(alice, thread):
    first = send(alice.client, thread["id"], HTTP_IDEMPOTENCY_KEY="retry-1")
    second = send(alice.client, thread["id"], HTTP_IDEMPOTENCY_KEY="retry-1")
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    replayed = parse_sse(streamed_body(send(alice.client, thread["id"], stream=True, HTTP_IDEMPOTENCY_KEY="retry-1")))
    assert replayed[0]["id"] == 1 and replayed[-1]["data"]["message_id"] == first.json()["assistant_message"]["id"]
    assert_error(send(alice.client, thread["id"], content="other", HTTP_IDEMPOTENCY_KEY="retry-1"),
                 422, "idempotency_key_reused")
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 2
    assert_error(send(alice.client, thread["id"], HTTP_IDEMPOTENCY_KEY="x" * 300), 400)


def test_fifty_parallel_requests_with_one_key_create_one_message(alice, thread):
    results: list[int] = []
    lock = threading.Lock()

    def worker():
        client = make_client(alice.key)
        try:
            code = send(client, thread["id"], HTTP_IDEMPOTENCY_KEY="burst").status_code
        finally:
            connection.close()
        with lock:
            results.append(code)

    workers = [threading.Thread(target=worker) for _ in range(50)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 50 and set(results) <= {202, 409}
    assert results.count(202) >= 1
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 2


def test_outsider_and_read_only_access(alice, thread, outsider, read_only_client):
    reply_id = send(alice.client, thread["id"]).json()["assistant_message"]["id"]
    assert_not_found(send(outsider.client, thread["id"]))
    assert_not_found(stream(outsider.client, thread["id"], reply_id))
    assert_not_found(outsider.client.post(f"{THREADS}/{thread['id']}/messages/{reply_id}/cancel"))
    assert_error(send(read_only_client, thread["id"]), 403)
    assert_error(read_only_client.post(f"{THREADS}/{thread['id']}/messages/{reply_id}/cancel"), 403)
    assert stream(read_only_client, thread["id"], reply_id).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"content": ""}, {"content": 5}, {"content": "a\x00"}, {"content": "x", "extra": 1},
     {"content": "x", "attachments": "no"}],
)
def test_bad_message_bodies_are_400_and_write_nothing(alice, thread, body):
    response = alice.client.post(f"{THREADS}/{thread['id']}/messages", body, format="json")
    assert_error(response, 400, "invalid_request")
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 0


def test_unreachable_redis_is_503_and_writes_nothing(alice, thread):
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        assert_error(send(alice.client, thread["id"]), 503, "unavailable")
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 0


def test_reply_whose_producer_died_becomes_interrupted(alice, thread, workspace):
    reply_id = send(alice.client, thread["id"]).json()["assistant_message"]["id"]
    wait_final(alice.client, thread["id"], reply_id)
    # A reply left streaming by a process that is gone: its lease has lapsed and nobody renews it.
    with tenant_context(workspace.pk):
        orphan = Message.objects.create(
            workspace_id=workspace.pk, thread_id=thread["id"], position=3, role="assistant",
            status="streaming", content="Half a sent", lease_expires_at=timezone.now() - timedelta(seconds=1),
        )
    events = parse_sse(streamed_body(stream(alice.client, thread["id"], orphan.pk)))
    assert events[-1]["event"] == "error"
    assert events[-1]["data"]["error"]["code"] == "interrupted"
    assert events[-1]["data"]["message"]["status"] == "interrupted"
    assert events[-1]["data"]["message"]["content"] == joined_deltas(events) == "Half a sent"


# --- what a send asks of the database ---------------------------------------------------------
def thread_reads(queries) -> list[str]:
    statements = [q["sql"] for q in queries.captured_queries]
    return [sql for sql in statements if sql.startswith("SELECT") and "FROM chat_thread" in sql]


def test_a_send_reads_its_thread_once_locked_and_moves_it(alice, workspace):
    thread = alice.client.post(THREADS, {}, format="json").json()  # untitled: the first message names it
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
