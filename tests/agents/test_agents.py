"""Agents: CRUD, versions, slugs, input schemas, tools, who sees what, bad input."""

from __future__ import annotations

import pytest

from tests.agents.factories import AgentFactory
from tests.helpers import assert_error, assert_not_found, collect_pages

URL = "/api/v1/agents"
THREADS = "/api/v1/chat/threads"
MISSING = f"{URL}/agt_doesnotexist0000000000"
pytestmark = pytest.mark.django_db

LEAD_SCHEMA = {
    "type": "object",
    "properties": {"company": {"type": "string"}, "employees": {"type": "integer", "minimum": 1}},
    "required": ["company"],
    "additionalProperties": False,
}


def create(client, **body):
    body.setdefault("name", "Email Writer")
    body.setdefault("instructions", "Write a short, friendly email.")
    return client.post(URL, body, format="json")


@pytest.fixture
def agent(alice):
    response = create(alice.client, description="Drafts emails", input_schema=LEAD_SCHEMA, tools=["search_knowledge"])
    assert response.status_code == 201, response.content
    return response.json()


def test_create_returns_the_agent_at_version_1(alice, agent):
    assert agent["id"].startswith("agt_") and len(agent["id"]) > 20
    assert agent["object"] == "agent"
    assert (agent["name"], agent["slug"], agent["version"]) == ("Email Writer", "email-writer", 1)
    assert agent["input_schema"] == LEAD_SCHEMA and agent["tools"] == ["search_knowledge"]
    assert agent["description"] == "Drafts emails"
    assert agent["created_at"].endswith("Z")
    assert alice.client.get(f"{URL}/{agent['id']}").json() == agent


def test_defaults_and_exact_text(alice):
    response = create(alice.client, name=" Résumé ☕ Bot ", instructions="  Be brief.\n")
    body = response.json()
    assert response.status_code == 201, body
    assert body["name"] == " Résumé ☕ Bot " and body["instructions"] == "  Be brief.\n"
    assert body["slug"] == "resume-bot" and body["input_schema"] == {} and body["tools"] == []
    assert create(alice.client, name="東京", slug=None).status_code == 400  # null is not a slug
    assert create(alice.client, name="東京").json()["slug"] == "agent"


def test_name_and_instructions_are_required(alice):
    error = assert_error(alice.client.post(URL, {}, format="json"), 400, "invalid_request")
    assert {"name", "instructions"} <= set(error["fields"])


def test_slug_clashes_are_400(alice, agent):
    error = assert_error(create(alice.client), 400, "invalid_request")  # derived from the same name
    assert "slug" in error["fields"]
    error = assert_error(create(alice.client, name="Other", slug="email-writer"), 400)
    assert "slug" in error["fields"]
    other = create(alice.client, name="Other").json()
    error = assert_error(alice.client.patch(f"{URL}/{other['id']}", {"slug": "email-writer"}, format="json"), 400)
    assert "slug" in error["fields"]
    assert create(alice.client, name="Email Writer", slug="email-writer-2").status_code == 201


def test_slugs_are_per_workspace(agent, outsider):
    assert create(outsider.client).json()["slug"] == "email-writer"


def test_patch_raises_the_version_and_keeps_the_old_ones(alice, agent):
    url = f"{URL}/{agent['id']}"
    changed = alice.client.patch(url, {"instructions": "Write a formal email."}, format="json").json()
    assert changed["version"] == 2 and changed["instructions"] == "Write a formal email."
    assert changed["updated_at"] > agent["updated_at"]
    same = alice.client.patch(url, {"instructions": "Write a formal email.", "name": "Email Writer"}, format="json")
    assert same.json()["version"] == 2  # nothing changed, no new version
    alice.client.patch(url, {"tools": []}, format="json")
    versions = alice.client.get(f"{url}/versions").json()["results"]
    assert [(v["version"], v["instructions"], v["tools"]) for v in versions] == [
        (3, "Write a formal email.", []),
        (2, "Write a formal email.", ["search_knowledge"]),
        (1, "Write a short, friendly email.", ["search_knowledge"]),
    ]
    assert all(v["object"] == "agent_version" and v["agent_id"] == agent["id"] for v in versions)


def test_versions_paginate(alice, agent):
    url = f"{URL}/{agent['id']}"
    for i in range(6):
        alice.client.patch(url, {"description": f"edit {i}"}, format="json")
    versions = [v["version"] for v in collect_pages(alice.client, f"{url}/versions", limit=3)]
    assert versions == [7, 6, 5, 4, 3, 2, 1]


def test_list_by_name_and_by_slug(alice, workspace):
    AgentFactory(workspace=workspace, name="Zeta")
    alpha = AgentFactory(workspace=workspace, name="Alpha")
    names = [a["name"] for a in alice.client.get(URL).json()["results"]]
    assert names == ["Alpha", "Zeta"]
    assert [a["id"] for a in alice.client.get(f"{URL}?slug=alpha").json()["results"]] == [alpha.pk]
    for bad in ("a%00b", "s" * 10_000):
        assert_error(alice.client.get(f"{URL}?slug={bad}"), 400, "invalid_request")


def test_delete_keeps_bound_threads_working(alice, agent):
    thread = alice.client.post(THREADS, {"agent_id": agent["id"]}, format="json").json()
    assert alice.client.delete(f"{URL}/{agent['id']}").status_code == 204
    assert_not_found(alice.client.get(f"{URL}/{agent['id']}"))
    assert_not_found(alice.client.get(f"{URL}/{agent['id']}/versions"))
    kept = alice.client.get(f"{THREADS}/{thread['id']}").json()
    assert kept["agent_id"] is None and kept["context"]["agent"]["instructions"] == agent["instructions"]


def test_threads_keep_the_agent_version_they_were_created_with(alice, agent):
    thread = alice.client.post(THREADS, {"agent_id": agent["id"]}, format="json").json()
    assert thread["context"]["agent"]["version"] == 1
    alice.client.patch(f"{URL}/{agent['id']}", {"instructions": "New rules."}, format="json")
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["context"]["agent"]["version"] == 1
    refreshed = alice.client.patch(f"{THREADS}/{thread['id']}", {"refresh_context": True}, format="json").json()
    assert refreshed["context"]["agent"]["version"] == 2
    assert refreshed["context"]["agent"]["instructions"] == "New rules."


# --- input schemas and tools ------------------------------------------------------------------
@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string"},
        {"properties": {"a": {"type": "string"}}},
        {"type": "object", "properties": {"a": {"type": "strin"}}},
        {"type": "object", "properties": 5},
        {"type": "object", "required": "company"},
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}},
        {"type": "object", "properties": {"a": {"$ref": "https://evil.test/schema.json"}}},
        {"type": "object", "$schema": 7},
        [1, 2],
        "not a schema",
        {"type": "object", "description": "x" * 40_000},
        {"type": "object", "title": "a\x00b"},
    ],
)
def test_invalid_input_schemas_are_400(alice, schema):
    error = assert_error(create(alice.client, input_schema=schema), 400, "invalid_request")
    assert "input_schema" in error["fields"], error
    assert alice.client.get(URL).json()["results"] == []


def test_valid_schemas_of_other_drafts_and_local_refs_are_accepted(alice):
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "definitions": {"email": {"type": "string", "format": "email"}},
        "properties": {"to": {"$ref": "#/definitions/email"}},
    }
    assert create(alice.client, name="Draft 7", input_schema=draft7).status_code == 201


def test_patch_with_an_invalid_schema_changes_nothing(alice, agent):
    url = f"{URL}/{agent['id']}"
    assert_error(alice.client.patch(url, {"input_schema": {"type": "array"}}, format="json"), 400)
    assert alice.client.get(url).json() == agent


def test_tools_must_be_registered(alice):
    error = assert_error(create(alice.client, tools=["search_knowledge", "launch_missiles"]), 400)
    assert "launch_missiles" in error["fields"]["tools"][0]
    assert_error(create(alice.client, tools="search_knowledge"), 400)
    body = create(alice.client, tools=["run_agent", "search_knowledge", "run_agent"]).json()
    assert body["tools"] == ["run_agent", "search_knowledge"]


# --- who sees what ----------------------------------------------------------------------------
def test_outsider_gets_the_same_404_as_for_a_missing_id(agent, outsider):
    missing = outsider.client.get(MISSING)
    url = f"{URL}/{agent['id']}"
    for response in (
        outsider.client.get(url),
        outsider.client.patch(url, {"name": "mine"}, format="json"),
        outsider.client.delete(url),
        outsider.client.get(f"{url}/versions"),
    ):
        assert_not_found(response)
        assert response.content == missing.content
    assert outsider.client.get(URL).json()["results"] == []
    assert_not_found(outsider.client.post(THREADS, {"agent_id": agent["id"]}, format="json"))


def test_agents_are_shared_by_the_workspace(agent, bob, service_client):
    assert bob.client.get(f"{URL}/{agent['id']}").status_code == 200
    assert [a["id"] for a in service_client.get(URL).json()["results"]] == [agent["id"]]


def test_read_only_key_reads_but_cannot_write(agent, read_only_client):
    url = f"{URL}/{agent['id']}"
    assert read_only_client.get(URL).status_code == 200
    assert read_only_client.get(url).status_code == 200
    assert read_only_client.get(f"{url}/versions").status_code == 200
    assert_error(create(read_only_client, name="New"), 403, "forbidden")
    assert_error(read_only_client.patch(url, {"name": "x"}, format="json"), 403, "forbidden")
    assert_error(read_only_client.delete(url), 403, "forbidden")


def test_a_key_without_agents_scopes_is_refused(workspace, alice):
    from tests.conftest import make_client
    from tests.factories import issue_key

    client = make_client(issue_key(workspace, alice.user, scopes=["chat:read", "knowledge:read"]))
    assert_error(client.get(URL), 403, "forbidden")


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": ["x"]}, "name"),
        ({"name": "a\x00"}, "name"),
        ({"instructions": 5}, "instructions"),
        ({"instructions": "i" * 32_001}, "instructions"),
        ({"slug": "Has Spaces"}, "slug"),
        ({"slug": "-edge-"}, "slug"),
        ({"slug": "s" * 101}, "slug"),
        ({"slug": "a\x00"}, "slug"),
        ({"tools": [1]}, "tools.0"),
        ({"tools": ["t"] * 21}, "tools"),
        ({"version": 9}, "version"),
    ],
)
def test_create_rejects_bad_fields(alice, body, field):
    error = assert_error(create(alice.client, **body), 400, "invalid_request")
    assert field in error["fields"], error


@pytest.mark.parametrize(
    "raw,content_type,status",
    [("{not json", "application/json", 400), ("[]", "application/json", 400), ("name=x", "text/plain", 415)],
)
def test_non_json_bodies_are_4xx(alice, raw, content_type, status):
    assert_error(alice.client.generic("POST", URL, raw, content_type=content_type), status)


def test_ten_kilobyte_and_odd_ids_are_404(alice):
    for bad in ("agt_" + "x" * 10_000, "z" * 10_000, "doc_abc", "agt_%00"):
        assert_not_found(alice.client.get(f"{URL}/{bad}"))
        assert_not_found(alice.client.get(f"{URL}/{bad}/versions"))


def test_trailing_slash_is_not_a_route(alice):
    assert_not_found(alice.client.get(f"{URL}/"))
