"""The brand profile: versioned GET/PUT/PATCH, its history, and the snapshot threads keep."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error

URL = "/api/v1/knowledge/brand"
THREADS = "/api/v1/chat/threads"
pytestmark = pytest.mark.django_db

PROFILE = {
    "name": "Acme",
    "description": "Acme sells anvils to coyotes.",
    "voice": "Warm, brief, a little dry.",
    "facts": ["Founded in 1949.", "Ships worldwide."],
}


def put(client, **changes):
    return client.put(URL, {**PROFILE, **changes}, format="json")


def test_before_any_write_the_profile_is_empty_at_version_0(alice):
    response = alice.client.get(URL)
    assert response.status_code == 200
    empty = {"name": "", "description": "", "voice": "", "facts": [], "version": 0, "updated_at": None}
    assert response.json() == empty


def test_put_saves_and_raises_the_version_only_on_change(alice):
    first = put(alice.client)
    assert first.status_code == 200, first.content
    assert {k: first.json()[k] for k in PROFILE} == PROFILE
    assert first.json()["version"] == 1 and first.json()["updated_at"].endswith("Z")
    assert put(alice.client).json() == first.json()  # the same profile again changes nothing
    second = put(alice.client, voice="Formal.")
    assert second.json()["version"] == 2 and second.json()["voice"] == "Formal."
    assert alice.client.get(URL).json() == second.json()


def test_put_replaces_the_whole_profile(alice):
    put(alice.client)
    response = alice.client.put(URL, {"name": "Acme Corp"}, format="json")
    assert response.json() | {"updated_at": None} == {
        "name": "Acme Corp", "description": "", "voice": "", "facts": [], "version": 2, "updated_at": None,
    }


def test_patch_changes_only_what_is_sent(alice):
    put(alice.client)
    response = alice.client.patch(URL, {"facts": ["Ships to Mars."]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["facts"] == ["Ships to Mars."] and body["name"] == "Acme" and body["version"] == 2


def test_versions_are_kept_and_listed_newest_first(alice):
    put(alice.client)
    put(alice.client, voice="Formal.")
    put(alice.client, voice="Playful.")
    versions = alice.client.get(f"{URL}/versions").json()["results"]
    assert [(v["version"], v["voice"]) for v in versions] == [(3, "Playful."), (2, "Formal."), (1, PROFILE["voice"])]


def test_text_is_stored_exactly(alice):
    response = put(alice.client, name="  Acme ☕ ", facts=["  spaced  ", "東京"])
    assert response.json()["name"] == "  Acme ☕ " and response.json()["facts"] == ["  spaced  ", "東京"]


def test_each_workspace_has_its_own_profile(alice, outsider):
    put(alice.client)
    assert outsider.client.get(URL).json()["version"] == 0
    assert outsider.client.get(f"{URL}/versions").json()["results"] == []
    put(outsider.client, name="Globex")
    assert alice.client.get(URL).json()["name"] == "Acme"
    assert outsider.client.get(URL).json()["name"] == "Globex"


def test_read_only_key_reads_but_cannot_write(alice, read_only_client):
    put(alice.client)
    assert read_only_client.get(URL).json()["name"] == "Acme"
    assert read_only_client.get(f"{URL}/versions").status_code == 200
    assert_error(put(read_only_client, name="Hijacked"), 403, "forbidden")
    assert_error(read_only_client.patch(URL, {"name": "Hijacked"}, format="json"), 403, "forbidden")
    assert alice.client.get(URL).json()["name"] == "Acme"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": 5}, "name"),
        ({"name": "a\x00"}, "name"),
        ({"facts": "one fact"}, "facts"),
        ({"facts": [{"a": 1}]}, "facts.0"),
        ({"facts": [""]}, "facts.0"),
        ({"facts": ["x"] * 201}, "facts"),
        ({"voice": "v" * 10_001}, "voice"),
        ({"tone": "loud"}, "tone"),
    ],
)
def test_bad_bodies_are_400_and_change_nothing(alice, body, field):
    put(alice.client)
    error = assert_error(alice.client.put(URL, body, format="json"), 400, "invalid_request")
    assert field in error["fields"]
    assert alice.client.get(URL).json()["version"] == 1


def test_non_json_body_is_4xx(alice):
    assert_error(alice.client.generic("PUT", URL, "{nope", content_type="application/json"), 400)
    assert_error(alice.client.generic("PUT", URL, "name=x", content_type="application/x-www-form-urlencoded"), 415)


def test_delete_and_post_are_not_allowed(alice):
    assert_error(alice.client.delete(URL), 405)
    assert_error(alice.client.post(URL, PROFILE, format="json"), 405)


def test_threads_keep_the_brand_version_they_were_created_with(alice):
    put(alice.client)
    thread = alice.client.post(THREADS, {}, format="json").json()
    assert thread["context"]["brand"]["version"] == 1
    assert thread["context"]["brand"]["facts"] == PROFILE["facts"]
    put(alice.client, voice="Formal.")
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["context"]["brand"]["voice"] == PROFILE["voice"]
    refreshed = alice.client.patch(f"{THREADS}/{thread['id']}", {"refresh_context": True}, format="json").json()
    assert refreshed["context"]["brand"]["version"] == 2 and refreshed["context"]["brand"]["voice"] == "Formal."
