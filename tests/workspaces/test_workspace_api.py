"""`/api/v1/workspace`: who am I, and the members a key may see."""

from __future__ import annotations

import pytest

from tests.conftest import make_client
from tests.helpers import assert_error
from workspaces.keys import PREFIX_LENGTH
from workspaces.models import ApiKey
from workspaces.tenancy import ALL_SCOPES

pytestmark = pytest.mark.django_db
URL = "/api/v1/workspace"
MEMBERS = f"{URL}/members"


def test_personal_key_sees_its_workspace_and_key(alice, workspace):
    response = alice.client.get(URL)
    assert response.status_code == 200
    row = ApiKey.objects.get(user=alice.user)
    assert response.json() == {
        "id": workspace.pk,
        "slug": "acme",
        "name": "Acme",
        "key": {
            "id": row.pk,
            "prefix": alice.key[:PREFIX_LENGTH],
            "name": "",
            "scopes": list(ALL_SCOPES),
            "user_id": alice.id,
        },
    }
    assert row.pk.startswith("key_") and workspace.pk.startswith("ws_")


def test_service_key_has_no_user(service_client, service_key, workspace):
    body = service_client.get(URL).json()
    assert body["id"] == workspace.pk
    assert body["key"]["user_id"] is None
    assert body["key"]["prefix"] == service_key[:PREFIX_LENGTH]


def test_read_only_key_shows_its_scopes(read_only_client):
    assert read_only_client.get(URL).json()["key"]["scopes"] == ["chat:read", "knowledge:read", "agents:read"]


def test_service_key_lists_every_member_with_role(service_client, alice, bob, outsider):
    response = service_client.get(MEMBERS)
    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None and body["previous"] is None
    assert body["results"] == [
        {"id": alice.id, "email": "alice@acme.test", "name": alice.user.name, "role": "owner"},
        {"id": bob.id, "email": "bob@acme.test", "name": bob.user.name, "role": "member"},
    ]


def test_members_paginate(service_client, alice, bob):
    first = service_client.get(f"{MEMBERS}?limit=1").json()
    assert [m["id"] for m in first["results"]] == [alice.id]
    second = service_client.get(first["next"]).json()
    assert [m["id"] for m in second["results"]] == [bob.id]
    assert second["next"] is None


def test_personal_key_sees_only_itself(alice, bob):
    assert [m["id"] for m in bob.client.get(MEMBERS).json()["results"]] == [bob.id]
    assert [m["id"] for m in alice.client.get(MEMBERS).json()["results"]] == [alice.id]


def test_outsider_sees_only_its_own_workspace(alice, outsider, other_workspace):
    assert outsider.client.get(URL).json()["id"] == other_workspace.pk
    results = outsider.client.get(MEMBERS).json()["results"]
    assert [m["email"] for m in results] == ["eve@globex.test"]


@pytest.mark.parametrize("url", [URL, MEMBERS])
def test_no_key_is_401(url, anon_client):
    assert_error(anon_client.get(url), 401, "unauthorized")
    assert_error(make_client("tnx_garbage").get(url), 401, "unauthorized")


def test_writes_are_not_allowed(alice):
    assert_error(alice.client.post(URL, {}, format="json"), 405, "method_not_allowed")
    assert_error(alice.client.delete(MEMBERS), 405, "method_not_allowed")
