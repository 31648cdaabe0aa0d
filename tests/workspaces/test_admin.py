"""The support admin: one workspace at a time under row-level security, history read-only, no secrets."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from django.test import Client

from workspaces.keys import hash_key
from workspaces.models import ApiKey, User
from workspaces.tenancy import tenant_context

pytestmark = pytest.mark.django_db
STAFF_PASSWORD = "correct horse battery staple"
THREADS = "/admin/chat/thread/"


def test_tenant_lists_ask_for_a_workspace_and_show_only_the_chosen_one(staff, alice_thread, outsider_thread, workspace):
    unchosen = staff.get(THREADS)
    assert unchosen.status_code == 200
    assert b"Choose a workspace" in unchosen.content
    assert f"?workspace={workspace.pk}".encode() in unchosen.content  # the filter offers it
    assert alice_thread.title.encode() not in unchosen.content
    assert outsider_thread.title.encode() not in unchosen.content

    chosen = staff.get(f"{THREADS}?workspace={workspace.pk}")
    assert chosen.status_code == 200
    assert alice_thread.title.encode() in chosen.content
    assert b"alice@acme.test" in chosen.content
    assert outsider_thread.title.encode() not in chosen.content

    # The choice is remembered: the bare list now opens on the same workspace.
    again = staff.get(THREADS)
    assert again.status_code == 302 and again["Location"] == f"{THREADS}?workspace={workspace.pk}"


def test_search_by_user_email_and_by_id(staff, alice_thread, workspace):
    by_email = staff.get(f"{THREADS}?workspace={workspace.pk}&q=alice%40acme")
    assert alice_thread.title.encode() in by_email.content
    by_id = staff.get(f"{THREADS}?workspace={workspace.pk}&q={alice_thread.pk}")
    assert alice_thread.title.encode() in by_id.content
    assert alice_thread.title.encode() not in staff.get(f"{THREADS}?workspace={workspace.pk}&q=nobody").content


def test_thread_page_shows_messages_in_order_read_only(staff, alice_thread, workspace):
    filters = quote(f"workspace={workspace.pk}")
    page = staff.get(f"{THREADS}{alice_thread.pk}/change/?_changelist_filters={filters}")
    assert page.status_code == 200
    html = page.content.decode()
    positions = [html.index(text) for text in ("first: hello", "second: the quote", "third: thanks")]
    assert positions == sorted(positions)
    assert 'name="_save"' not in html  # a view page, not a form
    assert "<textarea" not in html and 'name="messages-0-content"' not in html
    assert staff.get(f"{THREADS}add/").status_code == 403
    posted = staff.post(f"{THREADS}{alice_thread.pk}/change/", {"title": "changed by staff"})
    assert posted.status_code == 403


def test_object_pages_open_in_their_own_workspace(staff, alice_thread, outsider_thread, workspace, other_workspace):
    staff.get(f"{THREADS}?workspace={workspace.pk}")
    assert staff.get(f"{THREADS}{alice_thread.pk}/change/").status_code == 200
    # Another workspace's thread opens too, in its own workspace, which the lists then follow.
    page = staff.get(f"{THREADS}{outsider_thread.pk}/change/")
    assert page.status_code == 200 and outsider_thread.title.encode() in page.content
    assert alice_thread.title.encode() not in page.content
    assert staff.get(THREADS)["Location"] == f"{THREADS}?workspace={other_workspace.pk}"
    # An id no workspace holds: the admin says so and goes back, as for any missing object.
    assert staff.get(f"{THREADS}thr_0000000000000000000000/change/").status_code == 302


def test_message_admin_lists_the_workspace_history(staff, alice_thread, outsider, workspace):
    page = staff.get(f"/admin/chat/message/?workspace={workspace.pk}&role=user")
    assert page.status_code == 200
    assert page.content.count(b"the quote") == 1
    with tenant_context(workspace.pk):
        message = alice_thread.messages.get(position=2)
    detail = staff.get(f"/admin/chat/message/{message.pk}/change/")
    assert detail.status_code == 200
    assert b"second: the quote" in detail.content
    assert alice_thread.title.encode() in detail.content  # the thread, read while the page renders


def test_key_hashes_never_appear(staff, alice, service_key, workspace):
    keys = list(ApiKey.objects.filter(workspace=workspace))
    lists = [staff.get("/admin/workspaces/apikey/"), staff.get(f"/admin/workspaces/workspace/{workspace.pk}/change/")]
    for page in lists:
        assert page.status_code == 200
        assert all(key.prefix.encode() in page.content for key in keys)
    details = {key: staff.get(f"/admin/workspaces/apikey/{key.pk}/change/") for key in keys}
    for key, page in details.items():
        assert page.status_code == 200 and key.prefix.encode() in page.content
    pages = [*lists, *details.values()]
    for page in pages:
        for key in keys:
            assert key.secret_hash[:16].encode() not in page.content
    for secret in (alice.key, service_key):
        assert hash_key(secret) in {k.secret_hash for k in keys}
        assert all(secret.encode() not in page.content for page in pages)
    # Filtering on the hash would leak it one character at a time: refused.
    oracle = staff.get(f"/admin/workspaces/apikey/?secret_hash__startswith={keys[0].secret_hash[0]}")
    assert oracle.status_code == 400


def test_workspace_page_links_to_its_tenant_data(staff, workspace, alice):
    html = staff.get(f"/admin/workspaces/workspace/{workspace.pk}/change/").content.decode()
    assert f'href="{THREADS}?workspace={workspace.pk}"' in html
    assert "alice@acme.test" in html


def test_revoke_action_makes_the_key_answer_401(staff, alice, bob):
    assert alice.client.get("/api/v1/workspace").status_code == 200
    alice_key = ApiKey.objects.get(user=alice.user)
    response = staff.post(
        "/admin/workspaces/apikey/", {"action": "revoke_selected", "_selected_action": [alice_key.pk]}, follow=True
    )
    assert response.status_code == 200
    assert b"Revoked 1 key(s)" in response.content
    assert alice.client.get("/api/v1/workspace").status_code == 401
    assert bob.client.get("/api/v1/workspace").status_code == 200


def test_add_user_with_password_then_sign_in(staff):
    response = staff.post(
        "/admin/workspaces/user/add/",
        {
            "email": "Carol@Acme.test",
            "name": "Carol",
            "usable_password": "true",
            "password1": "a long enough password",
            "password2": "a long enough password",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, re.findall(r'errorlist[^>]*>(.*?)</ul>', response.content.decode())
    carol = User.objects.get(email="carol@acme.test")
    assert carol.check_password("a long enough password") and not carol.is_staff
    listing = staff.get("/admin/workspaces/user/?q=carol")
    assert b"carol@acme.test" in listing.content


def test_non_staff_cannot_open_the_admin(alice):
    client = Client()
    client.force_login(alice.user)
    response = client.get(THREADS)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_workspaces_users_and_keys_cannot_be_deleted_from_the_admin(staff, alice, workspace):
    # Their cascades reach tenant rows that RLS hides from an admin request: refused outright.
    key = ApiKey.objects.get(user=alice.user)
    for url in (
        f"/admin/workspaces/workspace/{workspace.pk}/delete/",
        f"/admin/workspaces/user/{alice.id}/delete/",
        f"/admin/workspaces/apikey/{key.pk}/delete/",
    ):
        assert staff.get(url).status_code == 403, url
    assert alice.client.get("/api/v1/workspace").status_code == 200
