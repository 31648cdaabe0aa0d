"""The server-rendered pages: login, the sidebar, the thread page, 404s and the workspace switcher."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chat.models import Attachment, Message
from tests.factories import (
    MembershipFactory,
    MessageFactory,
    ThreadFactory,
    UserFactory,
)
from tests.web.conftest import PASSWORD, session_client
from workspaces.tenancy import tenant_context

pytestmark = pytest.mark.django_db
THREAD_ITEM = re.compile(r'<li class="thread-item[^"]*"\s+data-thread-id="(thr_\w+)"')


def thread_ids(html: str, list_id: str) -> list[str]:
    """Thread ids of one sidebar list (`pinned-threads`, `recent-threads`, `archived-threads`)."""
    start = html.find(f'id="{list_id}"')
    if start == -1:
        return []
    return THREAD_ITEM.findall(html[start : html.index("</ul>", start)])


def without_csrf(html: bytes) -> bytes:
    return re.sub(rb'(content|value)="[A-Za-z0-9]{64}"', b"", html)


def ago(minutes: int):
    return timezone.now() - timedelta(minutes=minutes)


@pytest.mark.parametrize("path", ["/chat/", "/chat/thr_doesnotexist0000000000"])
def test_pages_need_a_login(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={path}"


def test_root_goes_to_the_chat():
    assert Client().get("/")["Location"] == "/chat/"
    assert Client().get("/chat")["Location"] == "/chat/"


def test_login_form_signs_in_with_email_and_password(workspace):
    user = UserFactory(email="carol@acme.test")
    user.set_password(PASSWORD)
    user.save()
    MembershipFactory(workspace=workspace, user=user)
    client = Client()
    page = client.get("/login?next=/chat/")
    assert page.status_code == 200 and b'type="email"' in page.content and b'type="password"' in page.content
    wrong = client.post("/login", {"username": "carol@acme.test", "password": "nope", "next": "/chat/"})
    assert wrong.status_code == 200 and b'role="alert"' in wrong.content
    assert client.get("/chat/").status_code == 302
    # Emails are stored lower-case; what people type is not.
    signed_in = client.post("/login", {"username": " Carol@ACME.test", "password": PASSWORD, "next": "/chat/"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200
    out = client.post("/logout")
    assert out.status_code == 302 and out["Location"] == "/login"
    assert client.get("/chat/").status_code == 302


def test_sidebar_lists_only_my_threads_pinned_then_by_recency(workspace, alice, bob, outsider, other_workspace):
    older = ThreadFactory(workspace=workspace, user=alice.user, title="Older", activity_at=ago(30))
    newer = ThreadFactory(workspace=workspace, user=alice.user, title="Newer", activity_at=ago(5))
    pinned = ThreadFactory(workspace=workspace, user=alice.user, title="Pinned", pinned=True, activity_at=ago(90))
    archived = ThreadFactory(workspace=workspace, user=alice.user, title="Old news", archived=True)
    bobs = ThreadFactory(workspace=workspace, user=bob.user, title="Bob's")
    theirs = ThreadFactory(workspace=other_workspace, user=outsider.user, title="Globex")
    html = session_client(alice.user).get("/chat/").content.decode()
    assert thread_ids(html, "pinned-threads") == [pinned.pk]
    assert thread_ids(html, "recent-threads") == [newer.pk, older.pk]
    assert thread_ids(html, "archived-threads") == [archived.pk]
    assert html.index('id="pinned-threads"') < html.index('id="recent-threads"') < html.index('id="archived-threads"')
    assert bobs.pk not in html and theirs.pk not in html and "Bob&#x27;s" not in html


def test_sidebar_search_uses_q_on_titles_and_messages(workspace, alice):
    by_title = ThreadFactory(workspace=workspace, user=alice.user, title="Renewal terms")
    by_message = ThreadFactory(workspace=workspace, user=alice.user, title="Call notes")
    MessageFactory(thread=by_message, content="They asked about the renewal discount.")
    ThreadFactory(workspace=workspace, user=alice.user, title="Unrelated")
    html = session_client(alice.user).get("/chat/?q=renewal").content.decode()
    assert sorted(thread_ids(html, "recent-threads")) == sorted([by_title.pk, by_message.pk])
    assert 'value="renewal"' in html
    # The links keep the search, so the list stays filtered while reading.
    assert f'href="/chat/{by_title.pk}?q=renewal"' in html


def test_thread_page_shows_the_whole_history(workspace, alice):
    thread = ThreadFactory(workspace=workspace, user=alice.user, title="Pro pricing")
    MessageFactory(thread=thread, position=1, role=Message.Role.USER, content="What does Pro cost? <b>now</b>")
    answer = MessageFactory(
        thread=thread, position=2, role=Message.Role.ASSISTANT, content="Pro costs 49 € per seat.",
        tool_calls=[{"id": "call_1", "name": "search_knowledge", "arguments": {"query": "Pro cost"},
                     "result": {"results": [{"title": "Pricing"}]}, "status": "complete"}],
    )
    MessageFactory(thread=thread, position=3, role=Message.Role.USER, content="And Team?")
    MessageFactory(thread=thread, position=4, role=Message.Role.ASSISTANT, content="Team costs", status="cancelled")
    with tenant_context(workspace.pk):
        Attachment.objects.create(
            workspace=workspace, message=answer, type=Attachment.Type.LEAD, lead={"name": "Ada"},
            title="Ada Lovelace", excerpt="Analytical Engines Ltd", content_sha256="0" * 64,
        )
    html = session_client(alice.user).get(f"/chat/{thread.pk}").content.decode()
    contents = re.findall(r'<div class="message-content">(.*?)</div>', html, re.DOTALL)
    assert contents == [
        "What does Pro cost? &lt;b&gt;now&lt;/b&gt;", "Pro costs 49 € per seat.", "And Team?", "Team costs"
    ]
    assert re.findall(r'data-role="(\w+)"', html) == ["user", "assistant", "user", "assistant"]
    assert "<h1 id=\"thread-title\">Pro pricing</h1>" in html
    assert '<details class="tool-call" data-call-id="call_1">' in html and "<code>search_knowledge</code>" in html
    assert "&quot;query&quot;: &quot;Pro cost&quot;" in html
    assert "Ada Lovelace" in html and "Analytical Engines Ltd" in html
    assert html.count("<time datetime=") == 4 and "Stopped" in html
    assert 'id="composer"' in html and 'id="stop-button"' in html


def test_a_thread_that_is_not_mine_is_the_same_404_page_as_a_missing_one(
    workspace, alice, bob, outsider, other_workspace
):
    bobs = ThreadFactory(workspace=workspace, user=bob.user)
    theirs = ThreadFactory(workspace=other_workspace, user=outsider.user)
    client = session_client(alice.user)
    missing = client.get("/chat/thr_doesnotexist0000000000")
    assert missing.status_code == 404 and missing["Content-Type"].startswith("text/html")
    assert b"Thread not found" in missing.content
    for path in (f"/chat/{bobs.pk}", f"/chat/{theirs.pk}", "/chat/" + "x" * 300, "/chat/msg_notathread"):
        response = client.get(path)
        assert response.status_code == 404
        assert without_csrf(response.content) == without_csrf(missing.content), path
    assert session_client(bob.user).get(f"/chat/{bobs.pk}").status_code == 200


def test_a_user_without_a_workspace_gets_a_friendly_page(db):
    loner = UserFactory(email="loner@example.com")
    response = session_client(loner).get("/chat/")
    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")
    assert b"not a member of any" in response.content and b"loner@example.com" in response.content


def test_workspace_switcher_changes_what_pages_and_api_show(workspace, other_workspace, alice):
    here = ThreadFactory(workspace=workspace, user=alice.user, title="Acme thread")
    MembershipFactory(workspace=other_workspace, user=alice.user)  # a newer membership
    there = ThreadFactory(workspace=other_workspace, user=alice.user, title="Globex thread")
    client = session_client(alice.user)
    page = client.get("/chat/").content.decode()
    assert thread_ids(page, "recent-threads") == [here.pk]  # the oldest membership by default
    assert 'id="workspace-select"' in page
    assert client.post("/workspace/switch", {"workspace_id": other_workspace.pk})["Location"] == "/chat/"
    assert thread_ids(client.get("/chat/").content.decode(), "recent-threads") == [there.pk]
    assert [t["id"] for t in client.get("/api/v1/chat/threads").json()["results"]] == [there.pk]
    assert client.get(f"/chat/{here.pk}").status_code == 404
    # A workspace the user is not in is ignored.
    stranger = MembershipFactory().workspace
    client.post("/workspace/switch", {"workspace_id": stranger.pk})
    assert thread_ids(client.get("/chat/").content.decode(), "recent-threads") == [there.pk]


def test_static_files_are_served_without_collectstatic():
    for path, kind in (("/static/chat/chat.js", "javascript"), ("/static/chat/chat.css", "text/css")):
        response = Client().get(path)
        assert response.status_code == 200 and kind in response["Content-Type"], path
    assert Client().get("/static/chat/nope.js").status_code == 404
