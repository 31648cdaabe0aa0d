"""Full-text search: `?q=` on the thread list and on a thread's messages (PostgreSQL here; the
embedded SQLite default runs the same API checks in tests/test_embedded_default.py)."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.search import split_marks
from tests.factories import MessageFactory, ThreadFactory
from tests.helpers import assert_error, assert_not_found, collect_pages
from workspaces.checks import check_search_can_use_its_indexes
from workspaces.tenancy import tenant_context

URL = "/api/v1/chat/threads"
pytestmark = pytest.mark.django_db


@pytest.fixture
def pricing(workspace, alice):
    """Alice's threads: one whose message talks pricing, one titled about pricing, one unrelated."""
    by_message = ThreadFactory(workspace=workspace, user=alice.user, title="Monday call")
    MessageFactory(thread=by_message, position=1, content="Hello there")
    wanted = MessageFactory(
        thread=by_message, position=2,
        content="Our pricing changed in March: the Pro plan is now 49 dollars per seat for every team.",
    )
    by_title = ThreadFactory(workspace=workspace, user=alice.user, title="Pricing questions")
    other = ThreadFactory(workspace=workspace, user=alice.user, title="Launch plan")
    MessageFactory(thread=other, position=1, content="The launch is on Tuesday")
    return by_message, wanted, by_title, other


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content[:500]
    return [item["id"] for item in response.json()["results"]]


def test_a_word_prefix_finds_titles_and_message_text_with_a_snippet(alice, pricing):
    by_message, wanted, by_title, other = pricing
    response = alice.client.get(f"{URL}?q=pric")
    assert set(ids(response)) == {by_message.pk, by_title.pk}
    results = {item["id"]: item for item in response.json()["results"]}
    hit = results[by_message.pk]["search"]
    assert hit["message_id"] == wanted.pk and hit["rank"] > 0
    assert [hit["snippet"][start:end] for start, end in hit["highlights"]] == ["pricing"]
    assert hit["snippet"] in wanted.content and len(hit["snippet"].split()) <= 16
    title_hit = results[by_title.pk]["search"]
    assert title_hit["message_id"] is None
    assert [title_hit["snippet"][s:e] for s, e in title_hit["highlights"]] == ["Pricing"]
    assert "search" not in alice.client.get(URL).json()["results"][0]  # only search results carry it


def test_every_word_must_match_and_order_is_the_lists(alice, pricing):
    by_message, _, by_title, other = pricing
    assert ids(alice.client.get(f"{URL}?q=pro pric")) == [by_message.pk]
    assert ids(alice.client.get(f"{URL}?q=plan")) == [other.pk, by_message.pk]  # newest activity first
    assert ids(alice.client.get(f"{URL}?q=zebra")) == []
    assert ids(alice.client.get(f"{URL}?q=%21%21%21")) == []  # no word at all matches nothing
    assert_error(alice.client.get(f"{URL}?q={'a' * 501}"), 400)


def test_dense_and_sparse_queries_find_the_same_threads(alice, bob, pricing, workspace, monkeypatch):
    """Few matches are collected through the indexes; many are found walking the list in order."""
    bobs = ThreadFactory(workspace=workspace, user=bob.user, title="Bob's pricing plan")
    queries = ["pric", "plan", "pro pric", "launch", "zebra"]
    sparse = {q: ids(alice.client.get(f"{URL}?q={q}")) for q in queries}
    monkeypatch.setattr("chat.search.DENSE_MATCHES", 1)
    assert {q: ids(alice.client.get(f"{URL}?q={q}")) for q in queries} == sparse
    assert bobs.pk not in sparse["plan"] and sparse["pric"] and sparse["zebra"] == []


def test_search_sees_only_the_scope(alice, bob, outsider, workspace, pricing, other_workspace):
    theirs = ThreadFactory(workspace=other_workspace, user=outsider.user, title="Pricing at Globex")
    MessageFactory(thread=theirs, position=1, content="pricing pricing pricing")
    bobs = ThreadFactory(workspace=workspace, user=bob.user, title="Bob's pricing notes")
    assert bobs.pk not in ids(alice.client.get(f"{URL}?q=pricing"))  # a personal key: only its user's
    assert ids(outsider.client.get(f"{URL}?q=pricing")) == [theirs.pk]
    assert ids(bob.client.get(f"{URL}?q=pricing")) == [bobs.pk]


def test_search_pages_like_the_list(alice, workspace):
    made = []
    for n in range(9):
        thread = ThreadFactory(workspace=workspace, user=alice.user, title=f"Renewal {n}")
        MessageFactory(thread=thread, position=1, content=f"renewal quote number {n}")
        made.append(thread.pk)
    seen = collect_pages(alice.client, f"{URL}?q=renew", limit=4)
    assert sorted(item["id"] for item in seen) == sorted(made)
    assert all(item["search"]["snippet"] for item in seen)


def test_message_search_inside_a_thread(alice, outsider, pricing):
    by_message, wanted, _, other = pricing
    url = f"{URL}/{by_message.pk}/messages"
    response = alice.client.get(f"{url}?q=dollars seat")
    assert ids(response) == [wanted.pk]
    hit = response.json()["results"][0]["search"]
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["dollars", "seat"]
    assert hit["message_id"] == wanted.pk
    MessageFactory(thread=by_message, position=3, content="A later word on pricing")
    assert len(ids(alice.client.get(f"{url}?q=pricing&order=desc"))) == 2
    assert ids(alice.client.get(f"{url}?q=launch")) == []  # the other thread's words are not here
    assert ids(alice.client.get(f"{url}?q=%2A%2A")) == []
    assert_error(alice.client.get(f"{url}?q={'a' * 501}"), 400)
    assert_not_found(outsider.client.get(f"{url}?q=pricing"))


def test_english_configuration_stems_and_reindexes(alice, workspace):
    thread = ThreadFactory(workspace=workspace, user=alice.user, title="Offers")
    MessageFactory(thread=thread, position=1, content="We priced the bundles yesterday")
    assert ids(alice.client.get(f"{URL}?q=prices")) == []  # 'simple': words as written
    call_command("set_search_config", workspace.slug, "english")
    assert ids(alice.client.get(f"{URL}?q=prices")) == [thread.pk]  # 'english': price, priced, prices
    later = ThreadFactory(workspace=workspace, user=alice.user, title="More offers")
    MessageFactory(thread=later, position=1, content="Bundle pricing")
    assert ids(alice.client.get(f"{URL}?q=bundle")) == [later.pk, thread.pk]


def test_split_marks():
    assert split_marks("a \ue000b\ue001 c \ue000dd\ue001") == ("a b c dd", [[2, 3], [6, 8]])
    assert split_marks("plain") == ("plain", [])
    assert split_marks("\ue000☕ caf\u00e9\ue001!") == ("☕ caf\u00e9!", [[0, 6]])  # code points, not bytes
    assert split_marks("a\ue001b \ue000c") == ("ab c", [])  # a stray end, a start never closed
    assert split_marks("\ue000\ue001x \ue000a\ue000b\ue001\ue001") == ("x ab", [[3, 4]])  # empty; restarted


def test_searching_asks_the_workspace_nothing_more(alice, workspace):
    """Authentication reads the workspace's search configuration with the key: a search sends
    the planner's estimate, the page and one statement for every hit's snippet, and no more."""
    thread = ThreadFactory(workspace=workspace, user=alice.user, title="Pricing")
    MessageFactory(thread=thread, position=1, content="Pro pricing is monthly")
    alice.client.get(URL)  # the key's last use is written once a minute: not part of what is counted
    with CaptureQueriesContext(connection) as captured:
        response = alice.client.get(f"{URL}?q=pric")
    assert ids(response) == [thread.pk]
    assert response.json()["results"][0]["search"]["snippet"] == "Pro pricing is monthly"
    statements = [q["sql"] for q in captured.captured_queries]
    assert not [sql for sql in statements if "search_config" in sql and "workspaces_workspace" in sql
                and "apikey" not in sql], statements
    assert len([sql for sql in statements if "ts_headline" in sql or "snippet(" in sql]) == 1, statements


# --- the plan under row-level security ----------------------------------------------------------
def superuser_connection():
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, user="postgres",
        dbname=settings["NAME"], autocommit=True,
    )


def message_search_plan(workspace_id: str, word: str) -> str:
    """The plan of a one-word search (a whole word: the planner's estimate for a prefix on a few
    thousand rows is too rough to decide between indexes the way it does at scale)."""
    with tenant_context(workspace_id), connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT id FROM chat_message WHERE workspace_id = %s "
            "AND search_vector @@ to_tsquery('simple', %s)",
            [workspace_id, word],
        )
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_search_uses_its_index_under_row_level_security_once_enabled(workspace, other_workspace, alice):
    """As the suite's role (row-level security forced), the GIN index serves a search only once
    `tsvector @@ tsquery` is leakproof; `manage.py check` says so until then."""
    with superuser_connection() as admin:
        leakproof = admin.execute(
            "SELECT proleakproof FROM pg_proc WHERE oid = 'ts_match_vq(tsvector, tsquery)'::regprocedure"
        ).fetchone()[0]
        try:
            # 2 x 200 threads of 20 messages; one message of the first workspace holds the rare word.
            admin.execute(
                "INSERT INTO chat_thread (id, workspace_id, user_id, title, title_is_auto, system_prompt, "
                "knowledge_document_ids, context, pinned, archived, message_count, metadata, created_at, "
                "updated_at, activity_at) SELECT 'thr_plan' || w.n || '_' || g, w.id, %s, '', false, '', '[]', "
                "'{}', false, false, 0, '{}', now(), now(), now() "
                "FROM (VALUES (1, %s), (2, %s)) w(n, id), generate_series(1, 200) g",
                [alice.id, workspace.pk, other_workspace.pk],
            )
            admin.execute(
                "INSERT INTO chat_message (id, workspace_id, thread_id, position, role, content, status, "
                "tool_calls, usage, created_at, last_seq, producer) "
                "SELECT 'msg_' || t.id || '_' || g, t.workspace_id, t.id, g, 'user', 'common words ' || "
                "CASE WHEN t.id = 'thr_plan1_7' AND g = 1 THEN 'zanzibar' ELSE 'text' END, "
                "'complete', '[]', '{}', now(), 0, '' FROM chat_thread t, generate_series(1, 20) g"
            )
            admin.execute("VACUUM ANALYZE chat_message")  # moves the GIN's pending list into the index
            admin.execute("ALTER FUNCTION ts_match_vq(tsvector, tsquery) NOT LEAKPROOF")
            assert "chat_message_search" not in message_search_plan(workspace.pk, "zanzibar")
            assert [w.id for w in check_search_can_use_its_indexes(databases=["default"])] == ["tenex.W003"]
            with pytest.raises(CommandError, match="only a superuser"):
                call_command("enable_search_indexes")  # the suite's role is no superuser
            admin.execute("ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF")
            plan = message_search_plan(workspace.pk, "zanzibar")
            assert "Bitmap Index Scan on chat_message_search" in plan, plan
            assert check_search_can_use_its_indexes(databases=["default"]) == []
            found = alice.client.get(f"{URL}?q=zanzib").json()["results"]
            assert [t["id"] for t in found] == ["thr_plan1_7"]
        finally:
            admin.execute(f"ALTER FUNCTION ts_match_vq(tsvector, tsquery) {'' if leakproof else 'NOT '}LEAKPROOF")


def test_a_search_page_shows_the_threads_as_the_list_does(service_client, alice, bob, workspace):
    """The search page is read by a statement of its own (rows, timestamps written by PostgreSQL):
    its thread objects, filters and cursors are the list's, field for field."""
    from tests.agents.factories import AgentFactory

    agent = AgentFactory(workspace=workspace)
    shapes = [
        dict(user=alice.user, metadata={"crm": {"id": 7}, "note": "é"}, context={"plan": "pro"}, pinned=True),
        dict(user=alice.user, agent=agent, system_prompt="Be brief.", knowledge_document_ids=["doc_x"]),
        dict(user=bob.user, archived=True),
        dict(user=bob.user, last_message_at=None),
    ]
    for n in range(12):
        thread = ThreadFactory(workspace=workspace, title=f"Renewal {n}", **shapes[n % 4])
        MessageFactory(thread=thread, position=1, content=f"renewal quote {n}")
    ThreadFactory(workspace=workspace, user=alice.user, title="Unrelated")
    filters = ["", "&pinned=true", "&archived=true", "&archived=false", f"&user_id={bob.id}", f"&agent_id={agent.pk}"]
    for extra in filters:
        listed = [item for item in collect_pages(service_client, f"{URL}?{extra[1:]}", limit=100)
                  if item["title"].startswith("Renewal")]
        found = collect_pages(service_client, f"{URL}?q=renewal{extra}", limit=2)
        assert all("renewal" in item.pop("search")["snippet"].lower() for item in found)
        assert found == listed and found, extra
    # A personal key's search sees its own threads; the way back from page 2 is page 1.
    first = alice.client.get(f"{URL}?q=renewal&limit=2").json()
    second = alice.client.get(first["next"]).json()
    assert {item["user_id"] for item in first["results"] + second["results"]} == {alice.id}
    assert alice.client.get(second["previous"]).json()["results"] == first["results"]
    assert_error(service_client.get(f"{URL}?q=renewal&cursor=forged"), 400)
    refused = service_client.get(f"{URL}?q=renewal&pinned=maybe&user_id={'u' * 65}")
    assert_error(refused, 400)
    assert refused.json() == service_client.get(f"{URL}?pinned=maybe&user_id={'u' * 65}").json()
    assert_error(service_client.get(f"{URL}?q=renewal&limit=0"), 400)
