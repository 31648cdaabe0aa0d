from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from chat import services
from chat.models import Message, Thread
from tests.factories import ThreadFactory
from tests.helpers import assert_error, assert_not_found, assert_written_as_declared, collect_pages
from workspaces.tenancy import Scope, tenant_context

URL = "/api/v1/chat/threads"
pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post(URL, body, format="json")


def test_create_returns_the_thread_object(alice):
    response = create(alice.client, title="Q4 campaign", system_prompt="  Be brief.\n", metadata={"crm": "hubspot"})
    assert response.status_code == 201, response.content
    thread = response.json()
    assert thread["id"].startswith("thr_") and len(thread["id"]) > 20
    assert thread["object"] == "thread"
    assert thread["title"] == "Q4 campaign"
    assert thread["system_prompt"] == "  Be brief.\n"  # stored exactly as sent
    assert thread["user_id"] == alice.id
    assert thread["agent_id"] is None
    assert thread["knowledge_document_ids"] == []
    assert thread["pinned"] is False and thread["archived"] is False
    assert thread["message_count"] == 0
    assert thread["last_message_at"] is None
    assert thread["metadata"] == {"crm": "hubspot"}
    assert thread["created_at"].endswith("Z") and "." in thread["created_at"]
    assert alice.client.get(f"{URL}/{thread['id']}").json() == thread


def test_create_with_unicode_and_empty_body(alice):
    response = create(alice.client, title="Café ☕ — 東京 🚀")
    assert response.status_code == 201
    assert response.json()["title"] == "Café ☕ — 東京 🚀"
    assert create(alice.client).status_code == 201


def test_title_comes_from_first_message_until_renamed(alice, workspace):
    thread_id = create(alice.client).json()["id"]
    scope = Scope(workspace_id=workspace.pk, user_id=alice.id)
    with tenant_context(workspace.pk):
        thread = Thread.objects.for_scope(scope).get(pk=thread_id)
        long_text = ("Draft   a launch email for our new analytics dashboard aimed at mid-market CFOs "
                     "who care about cash")
        services.message_append(scope=scope, thread=thread, role="user", content=long_text)
        services.message_append(scope=scope, thread=thread, role="user", content="second message")
    title = alice.client.get(f"{URL}/{thread_id}").json()["title"]
    assert title == "Draft a launch email for our new analytics dashboard aimed at mid-market CFOs"
    assert len(title) <= 80
    alice.client.patch(f"{URL}/{thread_id}", {"title": "Launch email"}, format="json")
    with tenant_context(workspace.pk):
        services.message_append(scope=scope, thread=thread, role="user", content="third")
    assert alice.client.get(f"{URL}/{thread_id}").json()["title"] == "Launch email"


def test_title_of_one_long_word_is_cut_at_80():
    assert services.title_from_content("x" * 200) == "x" * 80
    assert services.title_from_content("  hello\n\nworld ") == "hello world"


def test_patch_renames_pins_archives_and_changes_prompt(alice):
    thread_id = create(alice.client, title="old").json()["id"]
    response = alice.client.patch(
        f"{URL}/{thread_id}", {"title": "new", "pinned": True, "archived": True, "system_prompt": "x"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["title"], body["pinned"], body["archived"], body["system_prompt"]) == ("new", True, True, "x")
    assert body["updated_at"] > body["created_at"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"pinned": "yes"}, "pinned"),
        ({"archived": 1}, "archived"),
        ({"title": ""}, "title"),
        ({"title": 5}, "title"),
        ({"title": "a\x00b"}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_patch_rejects_bad_input_and_changes_nothing(alice, body, field):
    thread = create(alice.client, title="keep").json()
    error = assert_error(alice.client.patch(f"{URL}/{thread['id']}", body, format="json"), 400, "invalid_request")
    assert field in error["fields"]
    assert alice.client.get(f"{URL}/{thread['id']}").json() == thread


def test_put_is_not_allowed(alice):
    thread_id = create(alice.client).json()["id"]
    assert_error(alice.client.put(f"{URL}/{thread_id}", {"title": "x"}, format="json"), 405, "method_not_allowed")


def test_delete_removes_thread_and_messages(alice, workspace):
    thread_id = create(alice.client).json()["id"]
    scope = Scope(workspace_id=workspace.pk, user_id=alice.id)
    with tenant_context(workspace.pk):
        thread = Thread.objects.for_scope(scope).get(pk=thread_id)
        services.message_append(scope=scope, thread=thread, role="user", content="hello")
    assert alice.client.delete(f"{URL}/{thread_id}").status_code == 204
    assert_not_found(alice.client.get(f"{URL}/{thread_id}"))
    assert_not_found(alice.client.delete(f"{URL}/{thread_id}"))
    with tenant_context(workspace.pk):
        assert not Message.objects.for_workspace(workspace.pk).filter(thread_id=thread_id).exists()


def test_list_newest_activity_first_with_filters(alice, workspace):
    now = timezone.now()
    old = ThreadFactory(workspace=workspace, user=alice.user, title="old", activity_at=now - dt.timedelta(days=2))
    newer = ThreadFactory(workspace=workspace, user=alice.user, title="newer", activity_at=now - dt.timedelta(days=1))
    pinned = ThreadFactory(workspace=workspace, user=alice.user, title="pinned", pinned=True,
                           activity_at=now - dt.timedelta(days=3))
    archived = ThreadFactory(workspace=workspace, user=alice.user, title="archived", archived=True, activity_at=now)
    ids = [t["id"] for t in alice.client.get(URL).json()["results"]]
    assert ids == [newer.pk, old.pk, pinned.pk]
    assert [t["id"] for t in alice.client.get(f"{URL}?archived=true").json()["results"]] == [archived.pk]
    assert [t["id"] for t in alice.client.get(f"{URL}?pinned=true").json()["results"]] == [pinned.pk]
    assert [t["id"] for t in alice.client.get(f"{URL}?pinned=false").json()["results"]] == [newer.pk, old.pk]
    assert [t["id"] for t in alice.client.get(f"{URL}?q=NEW").json()["results"]] == [newer.pk]
    assert_error(alice.client.get(f"{URL}?pinned=maybe"), 400)


def test_q_searches_message_text(alice, workspace):
    hit = create(alice.client, title="one").json()["id"]
    create(alice.client, title="two")
    scope = Scope(workspace_id=workspace.pk, user_id=alice.id)
    with tenant_context(workspace.pk):
        services.message_append(
            scope=scope, thread=Thread.objects.get(pk=hit), role="user", content="the pricing of Zebra plan"
        )
    assert [t["id"] for t in alice.client.get(f"{URL}?q=zebra").json()["results"]] == [hit]


def test_pagination_visits_every_thread_once_with_equal_timestamps(alice, workspace):
    same = timezone.now()
    made = {ThreadFactory(workspace=workspace, user=alice.user, activity_at=same).pk for _ in range(23)}
    made |= {ThreadFactory(workspace=workspace, user=alice.user).pk for _ in range(4)}
    seen = [t["id"] for t in collect_pages(alice.client, URL, limit=5)]
    assert len(seen) == len(made) == len(set(seen))
    assert set(seen) == made


def test_previous_link_returns_the_page_before(alice, workspace):
    for _ in range(12):
        ThreadFactory(workspace=workspace, user=alice.user)
    first = alice.client.get(f"{URL}?limit=5").json()
    assert first["previous"] is None
    second = alice.client.get(first["next"]).json()
    back = alice.client.get(second["previous"]).json()
    assert [t["id"] for t in back["results"]] == [t["id"] for t in first["results"]]


@pytest.mark.parametrize("cursor", ["garbage", "eyJ0IjoxfQ", "x" * 5000, "%00"])
def test_bad_cursor_is_400(alice, cursor):
    assert_error(alice.client.get(f"{URL}?cursor={cursor}"), 400, "invalid_request")


def test_tampered_cursor_is_400(alice, workspace):
    for _ in range(3):
        ThreadFactory(workspace=workspace, user=alice.user)
    next_url = alice.client.get(f"{URL}?limit=1").json()["next"]
    head, _, cursor = next_url.partition("cursor=")
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    assert_error(alice.client.get(f"{head}cursor={tampered}"), 400)


def test_limit_bounds(alice, workspace):
    for _ in range(3):
        ThreadFactory(workspace=workspace, user=alice.user)
    assert len(alice.client.get(f"{URL}?limit=1000").json()["results"]) == 3
    assert len(alice.client.get(f"{URL}?limit={'9' * 5000}").json()["results"]) == 3  # clamped, however long
    assert_error(alice.client.get(f"{URL}?limit=0"), 400)
    assert_error(alice.client.get(f"{URL}?limit=abc"), 400)
    for odd in ("", " 5", "5_0", "\uff15", "5.0", "000"):
        assert_error(alice.client.get(URL, {"limit": odd}), 400)


def test_the_thread_object_is_what_its_schema_declares(alice, workspace):
    """`thread_data` writes the thread object by hand (fast); DRF's own rendering of the declared
    fields must give the same JSON, for a bare thread and a full one."""
    from chat.schemas import ThreadSchema, thread_data
    from tests.agents.factories import AgentFactory

    agent = AgentFactory(workspace=workspace)
    threads = [
        ThreadFactory(workspace=workspace, user=alice.user),
        ThreadFactory(
            workspace=workspace, user=alice.user, agent=agent, title=" ☕ spaced ", system_prompt="Be brief.\n",
            knowledge_document_ids=["doc_a", "doc_b"], pinned=True, archived=True, message_count=7,
            metadata={"crm": {"id": 12, "tags": ["é", None]}}, context={"agent": {"id": agent.pk, "version": 3}},
            last_message_at=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
            updated_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),  # no microseconds: still written
        ),
    ]
    with tenant_context(workspace.pk):
        for thread in threads:
            thread = Thread.objects.for_workspace(workspace.pk).get(pk=thread.pk)
            assert_written_as_declared(ThreadSchema(), thread_data(thread), thread)
