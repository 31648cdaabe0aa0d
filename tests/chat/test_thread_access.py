"""Who sees what: outsiders, personal vs service keys, read-only keys, bad input."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error, assert_not_found

URL = "/api/v1/chat/threads"
pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_thread(alice):
    return alice.client.post(URL, {"title": "alice's"}, format="json").json()


def test_outsider_gets_the_same_404_as_for_a_missing_id(alice_thread, outsider):
    thread_url = f"{URL}/{alice_thread['id']}"
    missing = outsider.client.get(f"{URL}/thr_doesnotexist0000000000")
    for response in (
        outsider.client.get(thread_url),
        outsider.client.patch(thread_url, {"title": "mine"}, format="json"),
        outsider.client.delete(thread_url),
        outsider.client.get(f"{thread_url}/messages"),
    ):
        assert_not_found(response)
        assert response.content == missing.content
    assert outsider.client.get(URL).json()["results"] == []


def test_personal_key_sees_only_its_own_user(alice_thread, bob):
    assert_not_found(bob.client.get(f"{URL}/{alice_thread['id']}"))
    assert bob.client.get(URL).json()["results"] == []
    assert bob.client.get(f"{URL}?user_id={alice_thread['user_id']}").json()["results"] == []


def test_personal_key_cannot_create_for_another_user(alice, bob):
    error = assert_error(alice.client.post(URL, {"user_id": bob.id}, format="json"), 400)
    assert "user_id" in error["fields"]
    assert alice.client.post(URL, {"user_id": alice.id}, format="json").status_code == 201


def test_service_key_lists_the_workspace_and_acts_for_named_member(alice_thread, bob, service_client, outsider):
    assert [t["id"] for t in service_client.get(URL).json()["results"]] == [alice_thread["id"]]
    assert service_client.get(f"{URL}?user_id={bob.id}").json()["results"] == []
    error = assert_error(service_client.post(URL, {"title": "x"}, format="json"), 400)
    assert "user_id" in error["fields"]
    created = service_client.post(URL, {"title": "for bob", "user_id": bob.id}, format="json")
    assert created.status_code == 201 and created.json()["user_id"] == bob.id
    assert bob.client.get(f"{URL}/{created.json()['id']}").status_code == 200
    error = assert_error(service_client.post(URL, {"user_id": outsider.id}, format="json"), 400)
    assert "user_id" in error["fields"]


def test_read_only_key_reads_but_cannot_write(alice_thread, read_only_client):
    assert read_only_client.get(URL).status_code == 200
    assert read_only_client.get(f"{URL}/{alice_thread['id']}").status_code == 200
    assert_error(read_only_client.post(URL, {}, format="json"), 403, "forbidden")
    assert_error(read_only_client.patch(f"{URL}/{alice_thread['id']}", {"pinned": True}, format="json"), 403)
    assert_error(read_only_client.delete(f"{URL}/{alice_thread['id']}"), 403)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer tnx_", "Token abc", "Bearer tnx_" + "a" * 38, "Bearer " + "x" * 10_000,
     "Basic dXNlcjpwYXNz"],
)
def test_bad_keys_all_get_one_401_body(anon_client, header):
    if header:
        anon_client.credentials(HTTP_AUTHORIZATION=header)
    error = assert_error(anon_client.get(URL), 401, "unauthorized")
    assert error["message"] == "Missing or invalid API key."


def test_malformed_key_is_refused_without_a_query(anon_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    anon_client.credentials(HTTP_AUTHORIZATION="Bearer tnx_" + "A" * 38)
    with CaptureQueriesContext(connection) as captured:
        assert anon_client.get(URL).status_code == 401
    # The test's own transaction shows up as savepoints; no statement may read anything.
    statements = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert statements == []


def test_revoked_and_expired_keys_answer_401(alice, workspace):
    from django.core.management import call_command
    from django.utils import timezone

    from workspaces.models import ApiKey

    call_command("revoke_api_key", alice.key[:12])
    assert_error(alice.client.get(URL), 401, "unauthorized")
    from tests.conftest import make_client
    from tests.factories import issue_key

    key = issue_key(workspace, alice.user)
    ApiKey.objects.filter(prefix=key[:12]).update(expires_at=timezone.now())
    assert_error(make_client(key).get(URL), 401, "unauthorized")


@pytest.mark.parametrize(
    "raw,content_type,status",
    [
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"text"', "application/json", 400),
        ("title=x", "application/x-www-form-urlencoded", 415),
        ("<x/>", "application/xml", 415),
    ],
)
def test_non_json_bodies_are_4xx(alice, raw, content_type, status):
    response = alice.client.generic("POST", URL, raw, content_type=content_type)
    assert_error(response, status)
    assert alice.client.get(URL).json()["results"] == []


@pytest.mark.parametrize(
    "body,field",
    [
        ({"title": ["x"]}, "title"),
        ({"system_prompt": {"a": 1}}, "system_prompt"),
        ({"agent_id": "agt_" + "x" * 10_000}, "agent_id"),
        ({"agent_id": 7}, "agent_id"),
        ({"knowledge_document_ids": "doc_x"}, "knowledge_document_ids"),
        ({"knowledge_document_ids": ["nope"]}, "knowledge_document_ids.0"),
        ({"metadata": [1]}, "metadata"),
        ({"metadata": {"k": "a\x00"}}, "metadata"),
        ({"metadata": {"k": "x" * 20_000}}, "metadata"),
        ({"user_id": 12}, "user_id"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_create_rejects_bad_fields(alice, body, field):
    error = assert_error(alice.client.post(URL, body, format="json"), 400, "invalid_request")
    assert field in error["fields"], error
    assert alice.client.get(URL).json()["results"] == []


def test_unknown_references_are_404_and_store_nothing(alice):
    assert_not_found(alice.client.post(URL, {"agent_id": "agt_missing00000000000000"}, format="json"))
    assert_not_found(alice.client.post(URL, {"knowledge_document_ids": ["doc_missing0000000000000"]}, format="json"))
    assert alice.client.get(URL).json()["results"] == []


def test_ten_kilobyte_ids_in_paths_are_404(alice):
    assert_not_found(alice.client.get(f"{URL}/{'thr_' + 'x' * 10_000}"))
    assert_not_found(alice.client.get(f"{URL}/{'y' * 10_000}/messages"))


def test_unknown_route_is_json_404(alice, anon_client):
    assert_not_found(anon_client.get("/api/v1/nothing-here"))
    assert_not_found(alice.client.get("/api/v1/chat/threads/"))
