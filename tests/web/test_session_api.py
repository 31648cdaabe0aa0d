"""The JSON API through a Django session: the same Scope, users and threads as a personal key."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.contrib.sessions.backends.db import SessionStore
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from tests.factories import MembershipFactory, ThreadFactory, UserFactory
from tests.helpers import (
    assert_error,
    collect_pages,
    joined_deltas,
    parse_sse,
    streamed_body,
)
from tests.web.conftest import csrf_token, session_client
from workspaces.authentication import ApiKeyAuthentication, SessionScopeAuthentication
from workspaces.models import ApiKey
from workspaces.services import api_key_revoke

pytestmark = pytest.mark.django_db
THREADS = "/api/v1/chat/threads"


def test_session_scope_is_the_personal_key_scope_without_a_key(alice):
    factory = APIRequestFactory()
    keyed = Request(factory.get(THREADS, HTTP_AUTHORIZATION=f"Bearer {alice.key}"))
    _, key_scope = ApiKeyAuthentication().authenticate(keyed)
    browser = factory.get(THREADS)
    browser.user, browser.session = alice.user, SessionStore()
    user, session_scope = SessionScopeAuthentication().authenticate(Request(browser))
    assert user == alice.user
    assert session_scope == replace(key_scope, key_id=None)
    assert session_scope.user_id == alice.id and not session_scope.is_service


def test_session_sees_exactly_what_the_personal_key_sees(
    workspace, alice, bob, service_client, outsider, other_workspace
):
    for index in range(9):
        ThreadFactory(workspace=workspace, user=alice.user, pinned=index % 4 == 0, archived=index % 3 == 0)
    ThreadFactory(workspace=workspace, user=bob.user)
    ThreadFactory(workspace=other_workspace, user=outsider.user)
    created = service_client.post(THREADS, {"user_id": alice.id, "title": "via service"}, format="json").json()
    browser = session_client(alice.user)
    for query in ("", "?archived=true", "?pinned=true", "?q=via"):
        by_key = [t["id"] for t in collect_pages(alice.client, THREADS + query, limit=4)]
        by_session = [t["id"] for t in collect_pages(browser, THREADS + query, limit=4)]
        assert by_session == by_key, query
    assert len(collect_pages(browser, THREADS)) == 7  # 6 not archived + the service one
    assert browser.get(f"{THREADS}/{created['id']}").json() == alice.client.get(f"{THREADS}/{created['id']}").json()
    assert browser.get("/api/v1/workspace/members").json() == alice.client.get("/api/v1/workspace/members").json()
    me = browser.get("/api/v1/workspace").json()
    assert me["id"] == workspace.pk and me["key"] is None


def test_unsafe_requests_need_the_csrf_token(alice):
    browser = session_client(alice.user, enforce_csrf=True)
    assert browser.get(THREADS).status_code == 200  # safe methods need none
    refused = browser.post(THREADS, {"title": "no token"}, content_type="application/json")
    assert "CSRF" in assert_error(refused, 403, "forbidden")["message"]
    token = csrf_token(browser)
    created = browser.post(THREADS, {"title": "Q3 plan"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201 and created.json()["user_id"] == alice.id
    url = f"{THREADS}/{created.json()['id']}"
    assert_error(browser.patch(url, {"pinned": True}, content_type="application/json"), 403)
    patched = browser.patch(
        url, {"pinned": True, "title": "Q3"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert patched.json()["pinned"] is True and patched.json()["title"] == "Q3"
    assert_error(browser.delete(url), 403)
    assert browser.delete(url, HTTP_X_CSRFTOKEN=token).status_code == 204
    assert alice.client.get(url).status_code == 404


@pytest.mark.parametrize("header", ["Bearer tnx_notakey", "Bearer ", "Basic abc", "Token tnx_x"])
def test_a_bad_key_is_401_even_with_a_session(alice, header):
    browser = session_client(alice.user)
    assert_error(browser.get(THREADS, HTTP_AUTHORIZATION=header), 401, "unauthorized")


def test_a_revoked_key_is_401_and_a_good_key_wins_over_the_session(workspace, alice, bob):
    ThreadFactory(workspace=workspace, user=bob.user, title="Bob's")
    browser = session_client(alice.user)
    as_bob = browser.get(THREADS, HTTP_AUTHORIZATION=f"Bearer {bob.key}").json()["results"]
    assert [t["title"] for t in as_bob] == ["Bob's"]
    api_key_revoke(api_key=ApiKey.objects.get(user=bob.user))
    assert_error(browser.get(THREADS, HTTP_AUTHORIZATION=f"Bearer {bob.key}"), 401)


def test_no_session_and_no_key_is_still_401(client):
    response = client.get(THREADS)
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_session_user_without_a_workspace_is_403(db):
    loner = UserFactory()
    assert_error(session_client(loner).get(THREADS), 403, "forbidden")


def test_removed_membership_falls_back_to_the_remaining_workspace(workspace, other_workspace, alice):
    second = MembershipFactory(workspace=other_workspace, user=alice.user)
    browser = session_client(alice.user)
    browser.post("/workspace/switch", {"workspace_id": other_workspace.pk})
    assert browser.get("/api/v1/workspace").json()["id"] == other_workspace.pk
    second.delete()
    assert browser.get("/api/v1/workspace").json()["id"] == workspace.pk


@pytest.mark.django_db(transaction=True)
def test_session_sends_streams_and_cancels_like_a_key(alice, settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 0
    browser = session_client(alice.user, enforce_csrf=True)
    token = csrf_token(browser)
    thread = browser.post(THREADS, {}, content_type="application/json", HTTP_X_CSRFTOKEN=token).json()
    url = f"{THREADS}/{thread['id']}/messages"
    response = browser.post(
        url, {"content": "What do we sell?"}, content_type="application/json",
        HTTP_ACCEPT="text/event-stream", HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    events = parse_sse(streamed_body(response))
    assert events[-1]["event"] == "done"
    final = events[-1]["data"]["message"]
    assert joined_deltas(events) == final["content"]
    # As the page's fetch sends it: no body, no content type.
    cancelled = browser.generic("POST", f"{url}/{final['id']}/cancel", b"", HTTP_X_CSRFTOKEN=token)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "complete"  # already finished
    replay = browser.get(f"{url}/{final['id']}/stream", HTTP_LAST_EVENT_ID="2")
    assert parse_sse(streamed_body(replay)) == events[2:]
    history = alice.client.get(url).json()["results"]
    assert [m["role"] for m in history] == ["user", "assistant"] and history[1]["content"] == final["content"]
