"""Documents: CRUD, who sees what, bad input, and `?q=` ranked search over the API."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error, assert_not_found, collect_pages
from tests.knowledge.factories import DocumentFactory

URL = "/api/v1/knowledge/documents"
MISSING = f"{URL}/doc_doesnotexist0000000000"
pytestmark = pytest.mark.django_db


def create(client, **body):
    body.setdefault("title", "Refund policy")
    body.setdefault("body", "Refunds are issued within 30 days.")
    return client.post(URL, body, format="json")


@pytest.fixture
def document(alice):
    response = create(alice.client, tags=["policy"], source_url="https://acme.test/refunds")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_returns_the_document_and_get_reads_it_back(alice):
    body = "  Line one.\n\nLine two — café ☕ 東京\n"
    response = create(alice.client, title=" Spaced title ", body=body, tags=["a", "b"], source_url="https://x.test/p")
    assert response.status_code == 201, response.content
    document = response.json()
    assert document["id"].startswith("doc_") and len(document["id"]) > 20
    assert document["object"] == "document"
    assert document["title"] == " Spaced title "  # stored exactly as sent
    assert document["body"] == body
    assert document["tags"] == ["a", "b"]
    assert document["source_url"] == "https://x.test/p"
    assert document["created_at"].endswith("Z")
    assert alice.client.get(f"{URL}/{document['id']}").json() == document


def test_title_and_body_are_required(alice):
    error = assert_error(alice.client.post(URL, {}, format="json"), 400, "invalid_request")
    assert {"title", "body"} <= set(error["fields"])
    error = assert_error(create(alice.client, title="", body=""), 400)
    assert {"title", "body"} <= set(error["fields"])


def test_documents_are_shared_by_the_workspace(document, bob, service_client):
    assert bob.client.get(f"{URL}/{document['id']}").status_code == 200
    assert [d["id"] for d in service_client.get(URL).json()["results"]] == [document["id"]]
    assert create(service_client).status_code == 201  # no user_id needed: documents belong to the workspace


def test_list_is_newest_first_and_paginates(alice, workspace):
    made = [DocumentFactory(workspace=workspace).pk for _ in range(12)]
    listed = [d["id"] for d in collect_pages(alice.client, URL, limit=5)]
    assert listed == list(reversed(made))


def test_patch_changes_only_what_is_sent(alice, document):
    response = alice.client.patch(f"{URL}/{document['id']}", {"body": "New terms.\n", "tags": []}, format="json")
    assert response.status_code == 200, response.content
    changed = response.json()
    assert changed["body"] == "New terms.\n" and changed["tags"] == []
    assert changed["title"] == document["title"] and changed["source_url"] == document["source_url"]
    assert changed["updated_at"] > document["updated_at"]


def test_put_is_not_allowed(alice, document):
    assert_error(alice.client.put(f"{URL}/{document['id']}", {"title": "x", "body": "y"}, format="json"), 405)


def test_delete_then_gone(alice, document):
    assert alice.client.delete(f"{URL}/{document['id']}").status_code == 204
    assert_not_found(alice.client.get(f"{URL}/{document['id']}"))
    assert_not_found(alice.client.delete(f"{URL}/{document['id']}"))
    assert alice.client.get(URL).json()["results"] == []


def test_outsider_gets_the_same_404_as_for_a_missing_id(document, outsider):
    missing = outsider.client.get(MISSING)
    url = f"{URL}/{document['id']}"
    for response in (
        outsider.client.get(url),
        outsider.client.patch(url, {"title": "mine"}, format="json"),
        outsider.client.delete(url),
    ):
        assert_not_found(response)
        assert response.content == missing.content
    assert outsider.client.get(URL).json()["results"] == []
    assert outsider.client.get(f"{URL}?q=refunds").json()["results"] == []


def test_outsider_changes_nothing(alice, document, outsider):
    outsider.client.patch(f"{URL}/{document['id']}", {"title": "mine"}, format="json")
    outsider.client.delete(f"{URL}/{document['id']}")
    assert alice.client.get(f"{URL}/{document['id']}").json() == document


def test_read_only_key_reads_but_cannot_write(document, read_only_client):
    url = f"{URL}/{document['id']}"
    assert read_only_client.get(URL).status_code == 200
    assert read_only_client.get(url).status_code == 200
    assert_error(create(read_only_client), 403, "forbidden")
    assert_error(read_only_client.patch(url, {"title": "x"}, format="json"), 403, "forbidden")
    assert_error(read_only_client.delete(url), 403, "forbidden")


def test_a_key_without_knowledge_scopes_is_refused(workspace, alice):
    from tests.conftest import make_client
    from tests.factories import issue_key

    chat_only = make_client(issue_key(workspace, alice.user, scopes=["chat:read", "chat:write"]))
    assert_error(chat_only.get(URL), 403, "forbidden")


@pytest.mark.parametrize(
    "raw,content_type,status",
    [
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"text"', "application/json", 400),
        ("title=x&body=y", "application/x-www-form-urlencoded", 415),
    ],
)
def test_non_json_bodies_are_4xx(alice, raw, content_type, status):
    assert_error(alice.client.generic("POST", URL, raw, content_type=content_type), status)
    assert alice.client.get(URL).json()["results"] == []


@pytest.mark.parametrize(
    "body,field",
    [
        ({"title": ["x"]}, "title"),
        ({"title": 5}, "title"),
        ({"body": {"a": 1}}, "body"),
        ({"title": "a\x00b"}, "title"),
        ({"body": "a\x00b"}, "body"),
        ({"title": "t" * 301}, "title"),
        ({"source_url": "javascript:alert(1)"}, "source_url"),
        ({"source_url": "https://x.test/\x00"}, "source_url"),
        ({"tags": "policy"}, "tags"),
        ({"tags": [1]}, "tags.0"),
        ({"tags": ["x\x00"]}, "tags.0"),
        ({"tags": ["t"] * 51}, "tags"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_create_rejects_bad_fields(alice, body, field):
    error = assert_error(create(alice.client, **body), 400, "invalid_request")
    assert field in error["fields"], error
    assert alice.client.get(URL).json()["results"] == []


@pytest.mark.parametrize("body,field", [({"title": ""}, "title"), ({"body": None}, "body"), ({"id": "doc_x"}, "id")])
def test_patch_rejects_bad_fields_and_changes_nothing(alice, document, body, field):
    error = assert_error(alice.client.patch(f"{URL}/{document['id']}", body, format="json"), 400)
    assert field in error["fields"]
    assert alice.client.get(f"{URL}/{document['id']}").json() == document


def test_ten_kilobyte_and_odd_ids_are_404(alice):
    for bad in ("doc_" + "x" * 10_000, "y" * 10_000, "agt_abc", "doc_%00", "doc_a%2Fb"):
        assert_not_found(alice.client.get(f"{URL}/{bad}"))


# --- search over the API ----------------------------------------------------------------------
def test_q_ranks_the_best_matching_document_first(alice, workspace):
    DocumentFactory(workspace=workspace, title="Onboarding", body="Welcome aboard. Your laptop ships on day one.")
    best = DocumentFactory(
        workspace=workspace, title="Enterprise refunds", body="Enterprise customers get refunds within 60 days."
    )
    partial = DocumentFactory(workspace=workspace, title="Refunds", body="Refunds for monthly plans take 5 days.")
    results = alice.client.get(f"{URL}?q=enterprise refund").json()["results"]
    assert [d["id"] for d in results] == [best.pk, partial.pk]
    assert results[0]["body"] == best.body  # the list shows whole documents; the tool quotes passages


def test_q_pages_through_ranked_results_once_each(alice, workspace):
    made = {DocumentFactory(workspace=workspace, body=f"pricing note {i}").pk for i in range(7)}
    DocumentFactory(workspace=workspace, body="nothing relevant")
    seen = [d["id"] for d in collect_pages(alice.client, f"{URL}?q=pricing", limit=3)]
    assert len(seen) == len(set(seen)) == 7 and set(seen) == made
    first = alice.client.get(f"{URL}?q=pricing&limit=3").json()
    second = alice.client.get(first["next"]).json()
    back = alice.client.get(second["previous"]).json()
    assert [d["id"] for d in back["results"]] == [d["id"] for d in first["results"]]


def test_a_cursor_of_one_search_is_refused_by_another(alice, workspace):
    for i in range(3):
        DocumentFactory(workspace=workspace, body=f"pricing and discounts {i}")
    next_url = alice.client.get(f"{URL}?q=pricing&limit=1").json()["next"]
    cursor = next_url.split("cursor=")[1].split("&")[0]
    assert_error(alice.client.get(f"{URL}?q=discounts&cursor={cursor}"), 400, "invalid_request")
    assert_error(alice.client.get(f"{URL}?cursor={cursor}"), 400, "invalid_request")


@pytest.mark.parametrize("q", ["a%00b", "x" * 501])
def test_bad_q_is_400(alice, q):
    error = assert_error(alice.client.get(f"{URL}?q={q}"), 400, "invalid_request")
    assert "q" in error["fields"]


def test_q_with_only_punctuation_or_stop_words_finds_nothing_without_error(alice, workspace):
    DocumentFactory(workspace=workspace, body="The plan is the plan.")
    for q in ("%22%22", "-", "the", "!!!", "or"):
        response = alice.client.get(f"{URL}?q={q}")
        assert response.status_code == 200, (q, response.content)
        assert response.json()["results"] == []
