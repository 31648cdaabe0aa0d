"""Support staff's admin: find anything by id, key or email whatever its workspace, read a conversation
(and leave a record of it), see a workspace's activity. On PostgreSQL with row-level security forced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone

from tests.agents.factories import AgentFactory
from tests.factories import MessageFactory, ThreadFactory
from tests.knowledge.factories import DocumentFactory
from tests.workspaces.conftest import signed_in
from workspaces.locate import FUNCTION, object_workspace_id
from workspaces.models import ApiKey, ConversationRead, User
from workspaces.tenancy import database_workspace, tenant_context

pytestmark = pytest.mark.django_db
THREADS = "/admin/chat/thread/"
LONG_RESULT = {"passages": [{"text": "The Pro plan costs 49 euros per seat. " * 40}]}


def change_url(app: str, model: str, pk: str) -> str:
    return f"/admin/{app}/{model}/{quote(pk)}/change/"  # the admin's quoting: `_` is `_5F`


def test_locating_an_object_sets_each_workspace_in_turn_and_restores_the_setting(
    alice_thread, outsider_thread, workspace, other_workspace
):
    from chat.models import Thread

    with tenant_context(workspace.pk):
        assert Thread.objects.filter(pk=outsider_thread.pk).count() == 0  # RLS hides it here
        assert object_workspace_id(Thread, outsider_thread.pk) == other_workspace.pk
        assert object_workspace_id(Thread, alice_thread.pk) == workspace.pk
        # The hint is tried first; a wrong one only costs the scan.
        assert object_workspace_id(Thread, outsider_thread.pk, hint=other_workspace.pk) == other_workspace.pk
        assert object_workspace_id(Thread, outsider_thread.pk, hint=workspace.pk) == other_workspace.pk
        assert object_workspace_id(Thread, "thr_0000000000000000000000", hint=workspace.pk) is None
        assert object_workspace_id(Thread, "thr_0000000000000000000000") is None
        assert database_workspace() in (workspace.pk, None)  # None on SQLite, which has no RLS setting
        assert Thread.objects.filter(pk=outsider_thread.pk).count() == 0
        if connection.vendor == "postgresql":  # any other table and column: the dynamic probe
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {FUNCTION}('chat_thread', 'title', %s)", [outsider_thread.title])
                assert cursor.fetchone()[0] == other_workspace.pk
            assert database_workspace() == workspace.pk


def test_find_box_lands_on_any_object_whatever_its_workspace(staff, outsider, other_workspace, outsider_thread):
    message = MessageFactory(thread=outsider_thread, content="Where is my invoice?")
    document = DocumentFactory(workspace=other_workspace, title="Globex price list")
    agent = AgentFactory(workspace=other_workspace, name="Globex mailer")
    key = ApiKey.objects.get(user=outsider.user)
    targets = {
        outsider_thread.pk: (change_url("chat", "thread", outsider_thread.pk), outsider_thread.title),
        message.pk: (change_url("chat", "message", message.pk), "Where is my invoice?"),
        document.pk: (change_url("knowledge", "document", document.pk), "Globex price list"),
        agent.pk: (change_url("agents", "agent", agent.pk), "Globex mailer"),
        outsider.user.pk: (change_url("workspaces", "user", outsider.user.pk), outsider.user.email),
        outsider.user.email.upper(): (change_url("workspaces", "user", outsider.user.pk), outsider.user.email),
        key.pk: (change_url("workspaces", "apikey", key.pk), key.prefix),
        key.prefix: (change_url("workspaces", "apikey", key.pk), key.prefix),
        outsider.key: (change_url("workspaces", "apikey", key.pk), key.prefix),
        other_workspace.pk: (change_url("workspaces", "workspace", other_workspace.pk), other_workspace.name),
        other_workspace.slug: (change_url("workspaces", "workspace", other_workspace.pk), other_workspace.name),
    }
    index = staff.get("/admin/").content.decode()
    assert 'action="/admin/find/"' in index and 'name="q"' in index  # the box is in every page's header
    for query, (url, shown) in targets.items():
        found = staff.get("/admin/find/", {"q": f"  {query} "})
        assert found.status_code == 302 and found["Location"] == url, query
        page = staff.get(url)  # no workspace chosen before: the page still opens
        assert page.status_code == 200 and shown in page.content.decode(), query
    assert outsider.key.encode() not in staff.get(targets[key.pk][0]).content


@pytest.mark.parametrize("query", ["thr_0000000000000000000000", "nobody@example.com", "tnx_AbCdEfGh", "no-such-slug"])
def test_find_box_says_when_nothing_matches(staff, query):
    response = staff.get("/admin/find/", {"q": query}, follow=True)
    assert response.redirect_chain == [("/admin/", 302)]
    assert "Nothing found for" in response.content.decode() and query in response.content.decode()


def test_find_box_is_for_staff_only(alice, outsider_thread):
    alice.user.set_password("a password for alice")
    alice.user.save()
    client = signed_in_non_staff(alice.user)
    response = client.get("/admin/find/", {"q": outsider_thread.pk})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def signed_in_non_staff(user: User):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_thread_page_shows_the_conversation_readably(staff, workspace, alice):
    thread = ThreadFactory(workspace=workspace, user=alice.user, title="Pricing questions")
    asked = MessageFactory(thread=thread, position=1, content="How much is Pro?")
    MessageFactory(
        thread=thread, position=2, role="assistant", status="complete", content="Pro costs 49 euros per seat.",
        usage={"input_tokens": 812, "output_tokens": 57},
        tool_calls=[{"id": "call_1", "name": "search_knowledge", "status": "complete",
                     "arguments": {"query": "Pro plan price"}, "result": LONG_RESULT}],
    )
    MessageFactory(thread=thread, position=3, content="And Team?")
    MessageFactory(thread=thread, position=4, role="assistant", status="failed", content="Team co",
                   error={"code": "provider_error", "message": "The provider timed out."})
    html = staff.get(change_url("chat", "thread", thread.pk)).content.decode()
    texts = ["How much is Pro?", "Pro costs 49 euros per seat.", "And Team?", "Team co"]
    assert [html.index(t) for t in texts] == sorted(html.index(t) for t in texts)
    assert html.count('class="turn-role"') == 4 and ">Assistant<" in html and ">User<" in html
    assert asked.created_at.strftime("%Y-%m-%d %H:%M:%S") in html
    assert ">Complete<" in html and ">Failed<" in html and "The provider timed out." in html
    assert "<code>search_knowledge</code>" in html and "&quot;query&quot;: &quot;Pro plan price&quot;" in html
    assert "characters in all)" in html and html.count("The Pro plan costs 49 euros per seat.") < 20  # summarized
    assert "812 in · 57 out tokens" in html and "812 tokens in, 57 tokens out" in html
    assert 'style="' not in html.split('id="content"')[1] and "<script>" not in html


def test_opening_a_conversation_is_recorded_and_listed_for_superusers_only(staff, alice_thread, workspace):
    before = timezone.now()
    assert staff.get(change_url("chat", "thread", alice_thread.pk)).status_code == 200
    with tenant_context(workspace.pk):
        message = alice_thread.messages.first()
    assert staff.get(change_url("chat", "message", message.pk)).status_code == 200
    staff.get(THREADS)  # a list is not a read of a conversation
    reads = list(ConversationRead.objects.order_by("read_at"))
    assert [(r.staff_email, r.tenant_id, r.thread_id, r.thread_title) for r in reads] == [
        ("support@tenex.test", workspace.pk, alice_thread.pk, alice_thread.title)
    ] * 2
    assert reads[0].via.startswith("thread") and reads[1].via == f"message {message.pk}"
    assert all(before <= r.read_at <= timezone.now() for r in reads)

    listing = staff.get("/admin/workspaces/conversationread/")
    assert listing.status_code == 200 and listing.content.decode().count(alice_thread.pk) >= 2
    record = staff.get(f"/admin/workspaces/conversationread/{reads[0].pk}/change/")
    assert record.status_code == 200 and 'name="_save"' not in record.content.decode()
    # Read-only, even for superusers: no add, no change, no delete.
    assert staff.get("/admin/workspaces/conversationread/add/").status_code == 403
    changed = staff.post(f"/admin/workspaces/conversationread/{reads[0].pk}/change/", {"thread_id": "x"})
    assert changed.status_code == 403
    assert staff.get(f"/admin/workspaces/conversationread/{reads[0].pk}/delete/").status_code == 403
    assert ConversationRead.objects.count() == 2

    # Staff who are not superusers read threads (and are recorded), but never see the record.
    support = User.objects.create_user(email="agent@tenex.test", password="an agent's password", is_staff=True)
    support.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    agent = signed_in("agent@tenex.test", "an agent's password")
    assert agent.get(change_url("chat", "thread", alice_thread.pk)).status_code == 200
    assert ConversationRead.objects.filter(staff=support).count() == 1
    assert agent.get("/admin/workspaces/conversationread/").status_code == 403
    assert b"conversationread" not in agent.get("/admin/").content


def test_workspace_page_shows_threads_messages_and_tokens_per_day(staff, workspace, alice, other_workspace):
    now = timezone.now()
    thread = ThreadFactory(workspace=workspace, user=alice.user)
    MessageFactory(thread=thread, position=1, usage={})
    MessageFactory(thread=thread, position=2, role="assistant", usage={"input_tokens": 100, "output_tokens": 20})
    old = ThreadFactory(workspace=workspace, user=alice.user, created_at=now - timedelta(days=3))
    MessageFactory(thread=old, position=1, created_at=now - timedelta(days=3))
    MessageFactory(thread=old, position=2, role="assistant", created_at=now - timedelta(days=3),
                   usage={"input_tokens": 7, "output_tokens": 3})
    MessageFactory(thread=old, position=3, created_at=now - timedelta(days=40))  # outside the 30 days
    other = ThreadFactory(workspace=other_workspace)
    MessageFactory(thread=other, position=1, usage={"input_tokens": 5000, "output_tokens": 5000})

    html = staff.get(change_url("workspaces", "workspace", workspace.pk)).content.decode()
    table = html.split('class="activity"')[1].split("</table>")[0]
    assert table.count("<tr data-day=") == 30

    def row(day) -> str:
        return table.split(f'data-day="{day:%Y-%m-%d}"')[1].split("</tr>")[0]

    today, three_ago = row(now.date()), row(now.date() - timedelta(days=3))
    assert '<td class="threads">1</td>' in today and '<td class="messages">2</td>' in today
    assert '<td class="tokens">120</td>' in today
    assert '<td class="threads">1</td>' in three_ago and '<td class="tokens">10</td>' in three_ago
    assert "2 threads started, 4 messages, 130 tokens." in html  # another workspace's 10,000 not counted


def test_favicon_answers_on_admin_pages(staff):
    icon = staff.get("/favicon.ico", follow=True)
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert b'rel="icon"' in staff.get("/admin/").content
