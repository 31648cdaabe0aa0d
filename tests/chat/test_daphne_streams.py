"""Streams across real daphne processes sharing PostgreSQL and Redis (one server, and the ones
using `servers` again on a Redis Cluster: tests/chat/test_stream_cluster.py has the rest of it)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import httpx
import pytest
from django.conf import settings

from tests.helpers import free_port, joined_deltas, parse_sse
from tests.processes import LEASE_SECONDS, daphne_process, redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
THREADS = "/api/v1/chat/threads"


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_url(request) -> str:
    """The REDIS_URL of the servers: the suite's Redis, or a Redis Cluster (`redis_cluster`)."""
    if request.param == "redis-cluster":
        return request.getfixturevalue("redis_cluster").url
    return settings.REDIS_URL


@pytest.fixture
def servers(redis_url, django_db_blocker):
    with daphne_process(REDIS_URL=redis_url) as (a, _), daphne_process(REDIS_URL=redis_url) as (b, _):
        yield a, b


def headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def iter_events(response):
    """SSE events from a streaming httpx response, one at a time, as they arrive."""
    buffer = ""
    for chunk in response.iter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield from parse_sse(block + "\n\n")


def read_events(response, count: int | None = None) -> list[dict]:
    """Read SSE events from a streaming httpx response, stopping after `count` events."""
    events: list[dict] = []
    buffer = ""
    for chunk in response.iter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            events.extend(parse_sse(block + "\n\n"))
            if count is not None and len(events) >= count:
                return events
    return events


def start_reply(base: str, key: str, thread_id: str, content: str = "Write a tagline for the launch") -> str:
    response = httpx.post(
        f"{base}{THREADS}/{thread_id}/messages", json={"content": content}, headers=headers(key), timeout=10
    )
    assert response.status_code == 202, response.text
    return response.json()["assistant_message"]["id"]


def stream_url(base: str, thread_id: str, message_id: str) -> str:
    return f"{base}{THREADS}/{thread_id}/messages/{message_id}/stream"


def full_stream(base: str, key: str, thread_id: str, message_id: str, after: int = 0) -> list[dict]:
    with httpx.stream(
        "GET", stream_url(base, thread_id, message_id), headers=headers(key, **{"Last-Event-ID": str(after)}),
        timeout=30,
    ) as response:
        assert response.status_code == 200
        return read_events(response)


@pytest.fixture
def thread_id(alice):
    return alice.client.post(THREADS, {"title": "multi-process"}, format="json").json()["id"]


def test_resume_on_a_second_process(servers, alice, thread_id):
    a, b = servers
    reply_id = start_reply(a, alice.key, thread_id)
    with httpx.stream("GET", stream_url(a, thread_id, reply_id), headers=headers(alice.key), timeout=30) as response:
        first = read_events(response, count=3)
    resumed = full_stream(b, alice.key, thread_id, reply_id, after=first[-1]["id"])
    events = first + resumed
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "done"
    assert joined_deltas(events) == events[-1]["data"]["message"]["content"]
    assert full_stream(a, alice.key, thread_id, reply_id) == events


def test_cancel_sent_to_b_stops_generation_on_a(servers, alice, thread_id):
    a, b = servers
    complete_id = start_reply(a, alice.key, thread_id)
    complete = full_stream(a, alice.key, thread_id, complete_id)
    reply_id = start_reply(a, alice.key, thread_id)
    with httpx.stream("GET", stream_url(a, thread_id, reply_id), headers=headers(alice.key), timeout=30) as response:
        read_events(response, count=5)
    cancelled = httpx.post(
        f"{b}{THREADS}/{thread_id}/messages/{reply_id}/cancel", headers=headers(alice.key), timeout=30
    )
    assert cancelled.status_code == 200, cancelled.text
    message = cancelled.json()
    assert message["status"] == "cancelled"
    events = full_stream(b, alice.key, thread_id, reply_id)
    assert events[-1]["event"] == "done" and events[-1]["data"]["message"]["status"] == "cancelled"
    assert joined_deltas(events) == message["content"]
    assert len(events) < len(complete)
    time.sleep(0.5)  # nothing more is produced after the cancel
    assert full_stream(a, alice.key, thread_id, reply_id) == events


def test_generation_continues_after_the_client_leaves(servers, alice, thread_id):
    a, _ = servers
    with httpx.stream(
        "POST", f"{a}{THREADS}/{thread_id}/messages", json={"content": "Summarise our positioning"},
        headers=headers(alice.key, Accept="text/event-stream"), timeout=30,
    ) as response:
        assert response.status_code == 200
        first_two = read_events(response, count=2)
    reply_id = first_two[0]["data"]["message_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        history = httpx.get(f"{a}{THREADS}/{thread_id}/messages", headers=headers(alice.key)).json()["results"]
        reply = next(m for m in history if m["id"] == reply_id)
        if reply["status"] != "streaming":
            break
        time.sleep(0.1)
    assert reply["status"] == "complete"
    events = full_stream(a, alice.key, thread_id, reply_id)
    assert events[:2] == first_two
    assert joined_deltas(events) == reply["content"]


def start_long_reply(base: str, key: str, thread_id: str) -> str:
    """A reply well under way on `base`: four of its events have been streamed."""
    reply_id = start_reply(base, key, thread_id, "Tell me everything about our pricing")
    with httpx.stream("GET", stream_url(base, thread_id, reply_id), headers=headers(key), timeout=30) as response:
        read_events(response, count=4)
    return reply_id


def test_killed_producer_leaves_an_interrupted_reply(servers, redis_url, alice, thread_id):
    a, _ = servers
    with daphne_process(REDIS_URL=redis_url) as (doomed, process):
        reply_id = start_long_reply(doomed, alice.key, thread_id)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        started = time.monotonic()
        events = full_stream(a, alice.key, thread_id, reply_id)
        waited = time.monotonic() - started
    assert events[-1]["event"] == "error"
    assert events[-1]["data"]["error"]["code"] == "interrupted"
    message = events[-1]["data"]["message"]
    assert message["status"] == "interrupted"
    assert joined_deltas(events) == message["content"]
    assert waited < LEASE_SECONDS + 5


def test_a_process_told_to_stop_finishes_its_replies_first(servers, redis_url, alice, thread_id):
    a, _ = servers
    with daphne_process(REDIS_URL=redis_url) as (stopping, process):
        reply_id = start_long_reply(stopping, alice.key, thread_id)
        process.terminate()  # SIGTERM, as a deploy or a scale-down sends it
        process.wait(30)
        # A clean stop: no sweep or checkpoint ran into the closing thread pools, nothing failed.
        stderr = process.log_path.read_text()
        assert "Traceback" not in stderr and "failed" not in stderr, stderr[-3000:]
    events = full_stream(a, alice.key, thread_id, reply_id)
    assert events[-1]["event"] == "done"
    message = events[-1]["data"]["message"]
    assert message["status"] == "complete"
    assert joined_deltas(events) == message["content"] and len(events) > 10


def test_open_streams_hold_no_request_thread_and_no_database_connection(alice, thread_id):
    """Six replies stream at once from a process with two request threads and two pooled database
    connections: each stream is served from the event loop, so requests keep being answered."""
    threads = [alice.client.post(THREADS, {}, format="json").json()["id"] for _ in range(6)]
    env = dict(
        TENEX_DB_POOL="true", TENEX_DB_POOL_MIN="0", TENEX_DB_POOL_MAX="2", TENEX_DB_POOL_TIMEOUT="3",
        TENEX_REQUEST_THREADS="2", TENEX_LOCAL_TOKEN_DELAY_MS="150",
    )
    with daphne_process(**env) as (base, _process), contextlib.ExitStack() as open_streams:
        streams = []
        for thread in threads:
            response = open_streams.enter_context(httpx.stream(
                "POST", f"{base}{THREADS}/{thread}/messages", json={"content": "Tell me everything about our pricing"},
                headers=headers(alice.key, Accept="text/event-stream"), timeout=30,
            ))
            assert response.status_code == 200
            events = iter_events(response)
            streams.append((events, [next(events), next(events)]))
        # Every stream is open and mid-reply; the process still answers at once.
        started = time.monotonic()
        listed = httpx.get(f"{base}{THREADS}", headers=headers(alice.key), timeout=10)
        assert listed.status_code == 200 and time.monotonic() - started < 2
        assert {thread["id"] for thread in listed.json()["results"]} >= set(threads)
        for events, first in streams:
            rest = list(events)
            assert rest[-1]["event"] == "done"
            assert joined_deltas(first + rest) == rest[-1]["data"]["message"]["content"]


def test_losing_redis_mid_reply_loses_no_text(alice, thread_id, tmp_path):
    """Redis stops mid-reply and comes back empty: the reply ends `failed` with what it had, and the
    client reading it gets every word of that, then the error."""
    port = free_port()
    with (
        redis_server(port, str(tmp_path)) as first_redis,
        daphne_process(REDIS_URL=f"redis://127.0.0.1:{port}/0", TENEX_LOCAL_TOKEN_DELAY_MS="50") as (base, _),
        httpx.stream(
            "POST", f"{base}{THREADS}/{thread_id}/messages", json={"content": "Tell me everything about our pricing"},
            headers=headers(alice.key, Accept="text/event-stream"), timeout=30,
        ) as response,
    ):
        assert response.status_code == 200
        events = iter_events(response)
        seen = [next(events) for _ in range(6)]
        first_redis.terminate()
        first_redis.wait(10)
        reply_id = seen[0]["data"]["message_id"]
        deadline = time.monotonic() + 10
        while True:  # the producer's next append fails: the reply ends with the text it has
            history = httpx.get(f"{base}{THREADS}/{thread_id}/messages", headers=headers(alice.key)).json()
            stored = next(m for m in history["results"] if m["id"] == reply_id)
            if stored["status"] != "streaming" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert stored["status"] == "failed" and stored["error"]["code"] == "stream_unavailable", stored
        with redis_server(port, str(tmp_path)):  # back, but empty: the log is gone
            rest = list(events)
            replayed = full_stream(base, alice.key, thread_id, reply_id)
    streamed = seen + rest
    assert [e["id"] for e in streamed] == list(range(1, len(streamed) + 1))
    assert streamed[-1]["event"] == "error" and streamed[-1]["data"]["error"]["code"] == "stream_unavailable"
    assert streamed[-1]["data"]["message"] == stored
    assert len(stored["content"]) > len(joined_deltas(seen)) > 0
    assert joined_deltas(streamed) == stored["content"]
    # A new reader from the start (the events Redis had accepted, still held in the producing
    # process's mirror, then the stored rest) gets it whole too.
    assert [e["id"] for e in replayed] == list(range(1, len(replayed) + 1))
    assert replayed[-1]["event"] == "error" and joined_deltas(replayed) == stored["content"]


def test_an_unreachable_database_is_a_503_with_retry_after(alice, thread_id):
    """PostgreSQL gone (or no pooled connection free in time): every API call that needs it answers
    503 with the error shape and `Retry-After`, never a 500; the process itself stays up."""
    dead = f"postgres://tenex_app@127.0.0.1:{free_port()}/nowhere"
    with daphne_process(DATABASE_URL=dead, TENEX_DB_POOL_TIMEOUT="1") as (base, process):
        calls = [
            ("GET", f"{THREADS}", None),
            ("POST", f"{THREADS}/{thread_id}/messages", {"content": "Hello"}),
            ("GET", "/api/v1/workspace", None),
        ]
        for method, path, body in calls:
            response = httpx.request(method, f"{base}{path}", json=body, headers=headers(alice.key), timeout=30)
            assert response.status_code == 503, (path, response.status_code, response.text[:300])
            assert response.headers["Retry-After"] == "2"
            error = response.json()["error"]
            assert error["code"] == "unavailable" and error["fields"] is None, error
        assert httpx.get(f"{base}/readyz", timeout=30).status_code == 503
        page = httpx.get(f"{base}/", timeout=30, follow_redirects=False)
        assert page.status_code in (302, 503), page.status_code  # the sign-in redirect needs no database
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        assert process.poll() is None
