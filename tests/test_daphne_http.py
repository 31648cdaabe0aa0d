"""HTTP as daphne serves it: HEAD answers carry no body (the next answer on a kept-alive connection
stays readable), and bodies sent without Content-Length (chunked) are read under the usual limits."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import parse_sse
from tests.processes import daphne_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
THREADS = "/api/v1/chat/threads"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with daphne_process(TENEX_LOCAL_TOKEN_DELAY_MS="50") as (base, _):
        yield base


def connect(base: str) -> http.client.HTTPConnection:
    parts = urlsplit(base)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)


def head_then_get(base: str, path: str, key: str) -> tuple[http.client.HTTPResponse, bytes]:
    """HEAD `path`, then GET /healthz on the same connection: the GET's answer is only readable if
    the HEAD's answer ended with its headers."""
    connection = connect(base)
    try:
        connection.request("HEAD", path, headers={"Authorization": f"Bearer {key}"})
        head = connection.getresponse()
        assert head.read() == b""
        connection.request("GET", "/healthz")
        after = connection.getresponse()  # raises BadStatusLine on leftover body bytes
        assert after.status == 200
        return head, after.read()
    finally:
        connection.close()


def test_head_answers_end_with_their_headers(server, alice):
    schema = httpx.get(f"{server}/api/v1/schema/", timeout=20)
    assert len(schema.content) > 64 * 1024  # more than daphne's first body chunk
    head, after = head_then_get(server, "/api/v1/schema/", alice.key)
    assert head.status == 200
    assert json.loads(after) == {"status": "ok"}


def test_head_on_a_stream_sends_no_events(server, alice):
    thread_id = httpx.post(
        f"{server}{THREADS}", json={"title": "h"}, headers={"Authorization": f"Bearer {alice.key}"}, timeout=20
    ).json()["id"]
    sent = httpx.post(
        f"{server}{THREADS}/{thread_id}/messages", json={"content": "How much is Pro?"},
        headers={"Authorization": f"Bearer {alice.key}"}, timeout=20,
    ).json()
    path = urlsplit(sent["stream_url"]).path
    head, _ = head_then_get(server, path, alice.key)  # the reply is still being written
    assert head.status == 200
    assert head.getheader("Content-Type").startswith("text/event-stream")
    # The stream itself still streams to a GET.
    with httpx.stream("GET", f"{server}{path}", headers={"Authorization": f"Bearer {alice.key}"}, timeout=30) as r:
        events = parse_sse(r.read())
    assert events[-1]["event"] == "done"


def chunked(data: bytes, size: int = 64 * 1024):
    """A body httpx sends with `Transfer-Encoding: chunked` (a generator has no length)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_body_is_read(server, alice):
    body = json.dumps({"title": "Chunked café ☕"}, ensure_ascii=False).encode()
    response = httpx.post(
        f"{server}{THREADS}", content=chunked(body, 7),
        headers={"Authorization": f"Bearer {alice.key}", "Content-Type": "application/json"}, timeout=20,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "Chunked café ☕"


@pytest.mark.parametrize("megabytes", [3, 50])
def test_a_chunked_body_over_the_limit_is_a_413(server, alice, megabytes):
    body = b'{"title": "' + b"x" * (megabytes * 1024 * 1024) + b'"}'
    response = httpx.post(
        f"{server}{THREADS}", content=chunked(body),
        headers={"Authorization": f"Bearer {alice.key}", "Content-Type": "application/json"}, timeout=60,
    )
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"]["code"] == "payload_too_large"
