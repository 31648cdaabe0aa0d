"""Operator commands: the last stdout line is the machine-read output."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import make_client
from workspaces.keys import PREFIX_LENGTH, parse_key
from workspaces.models import Membership, Workspace

pytestmark = pytest.mark.django_db
WHOAMI = "/api/v1/workspace"
THREADS = "/api/v1/chat/threads"


def run(*args: str) -> list[str]:
    """The command's stdout lines."""
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def last_line(*args: str) -> str:
    return run(*args)[-1]


def test_create_workspace_prints_its_id_and_is_idempotent_by_slug():
    workspace_id = last_line("create_workspace", "initech", "--name", "Initech")
    workspace = Workspace.objects.get(slug="initech")
    assert workspace_id == workspace.pk and workspace_id.startswith("ws_")
    assert workspace.name == "Initech"
    assert last_line("create_workspace", "initech") == workspace_id
    assert Workspace.objects.filter(slug="initech").count() == 1


def test_create_workspace_refuses_a_bad_slug():
    with pytest.raises(CommandError, match="slug"):
        run("create_workspace", "Not A Slug")
    assert not Workspace.objects.exists()


def test_personal_key_creates_the_member_and_works():
    last_line("create_workspace", "initech")
    key = last_line("create_api_key", "initech", "--user", "peter@initech.test", "--name", "peter laptop")
    assert parse_key(key) is not None
    membership = Membership.objects.select_related("user").get(workspace__slug="initech")
    assert membership.user.email == "peter@initech.test"
    body = make_client(key).get(WHOAMI).json()
    assert body["slug"] == "initech"
    assert body["key"]["user_id"] == membership.user.pk
    assert body["key"]["name"] == "peter laptop"
    # A second key for the same person reuses the member.
    last_line("create_api_key", "initech", "--user", "peter@initech.test")
    assert Membership.objects.filter(workspace__slug="initech").count() == 1


def test_service_key_without_user():
    last_line("create_workspace", "initech")
    key = last_line("create_api_key", "initech")
    body = make_client(key).get(WHOAMI).json()
    assert body["key"]["user_id"] is None
    assert not Membership.objects.exists()


def test_scopes_are_respected_and_unknown_scopes_refused():
    last_line("create_workspace", "initech")
    key = last_line("create_api_key", "initech", "--user", "peter@initech.test", "--scopes", "chat:read")
    client = make_client(key)
    assert client.get(WHOAMI).json()["key"]["scopes"] == ["chat:read"]
    assert client.get(THREADS).status_code == 200
    assert client.post(THREADS, {}, format="json").status_code == 403
    with pytest.raises(CommandError, match="chat:delete"):
        run("create_api_key", "initech", "--scopes", "chat:read,chat:delete")


def test_create_api_key_refuses_unknown_workspace_and_bad_email():
    with pytest.raises(CommandError, match="no workspace"):
        run("create_api_key", "nowhere")
    last_line("create_workspace", "initech")
    with pytest.raises(CommandError, match="not an email"):
        run("create_api_key", "initech", "--user", "peter")


@pytest.mark.parametrize("by", ["key", "prefix"])
def test_revoke_by_key_or_prefix_then_401(by):
    last_line("create_workspace", "initech")
    key = last_line("create_api_key", "initech")
    other = last_line("create_api_key", "initech")
    assert make_client(key).get(WHOAMI).status_code == 200
    last_line("revoke_api_key", key if by == "key" else key[:PREFIX_LENGTH])
    assert make_client(key).get(WHOAMI).status_code == 401
    assert make_client(other).get(WHOAMI).status_code == 200


def test_revoke_unknown_key_is_an_error():
    with pytest.raises(CommandError):
        run("revoke_api_key", "tnx_00000000")


def test_list_api_keys_shows_prefixes_never_keys():
    last_line("create_workspace", "initech")
    personal = last_line("create_api_key", "initech", "--user", "peter@initech.test")
    service = last_line("create_api_key", "initech", "--name", "crm sync")
    last_line("revoke_api_key", service)
    output = "\n".join(run("list_api_keys", "initech"))
    for key in (personal, service):
        assert key[:PREFIX_LENGTH] in output
        assert key[PREFIX_LENGTH:] not in output
    assert "peter@initech.test" in output and "crm sync" in output and "revoked" in output
