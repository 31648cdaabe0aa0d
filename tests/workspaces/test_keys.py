"""API keys: format and checksum, hash-only storage, constant-time comparison, last use, and 401s."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient

from tests.conftest import make_client
from tests.factories import ThreadFactory
from tests.helpers import assert_error
from workspaces import authentication, keys
from workspaces.ids import ALPHABET
from workspaces.models import ApiKey
from workspaces.tenancy import database_workspace

URL = "/api/v1/workspace"


def _with_valid_checksum(secret: str) -> str:
    return f"{keys.KEY_PREFIX}{secret}{keys._checksum(secret)}"


def test_generated_keys_have_the_documented_shape():
    key = keys.generate_key()
    assert key.startswith("tnx_") and len(key) == keys.KEY_LENGTH == 42
    assert set(key[4:]) <= set(ALPHABET)
    parsed = keys.parse_key(key)
    assert parsed is not None and parsed.prefix == key[: keys.PREFIX_LENGTH] and parsed.prefix.startswith("tnx_")
    assert keys.generate_key() != key


@pytest.mark.parametrize("position", [4, 20, 35, 36, 41])
def test_one_mistyped_character_is_refused_without_the_database(position):
    key = keys.generate_key()
    typo = "A" if key[position] != "A" else "B"
    assert keys.parse_key(key[:position] + typo + key[position + 1 :]) is None


@pytest.mark.parametrize(
    "raw",
    ["", "tnx_", "tnx_short", "sk_" + "a" * 39, "TNX_" + "a" * 38, None, 42],
)
def test_malformed_keys_are_refused(raw):
    assert keys.parse_key(raw) is None


def test_foreign_characters_are_refused_even_with_the_right_length():
    key = keys.generate_key()
    assert keys.parse_key(key[:10] + "-" + key[11:]) is None
    assert keys.parse_key(key[:10] + "é" + key[11:]) is None


def test_digest_comparison_is_constant_time_and_exact():
    key = keys.generate_key()
    digest = keys.hash_key(key)
    assert keys.digest_matches(key, digest)
    assert not keys.digest_matches(keys.generate_key(), digest)
    assert not keys.digest_matches(key, digest.upper())


@pytest.mark.django_db
def test_only_the_hash_is_stored(alice):
    row = ApiKey.objects.get(user=alice.user)
    assert row.secret_hash == keys.hash_key(alice.key)
    assert row.prefix == alice.key[: keys.PREFIX_LENGTH]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM workspaces_apikey WHERE id = %s", [row.pk])
        stored = cursor.fetchone()
    assert not any(isinstance(value, str) and alice.key[keys.PREFIX_LENGTH :] in value for value in stored)


@pytest.mark.django_db
def test_a_malformed_key_is_refused_before_any_key_lookup(alice):
    typo = alice.key[:-1] + ("A" if alice.key[-1] != "A" else "B")
    with CaptureQueriesContext(connection) as queries:
        response = make_client(typo).get(URL)
    assert_error(response, 401, "unauthorized")
    assert not [q["sql"] for q in queries if "workspaces_apikey" in q["sql"]]


@pytest.mark.django_db
def test_a_right_prefix_with_a_wrong_secret_goes_through_the_digest_comparison(alice, monkeypatch):
    forged = _with_valid_checksum(alice.key[4:12] + keys.generate_key()[12:36])
    assert keys.parse_key(forged).prefix == keys.parse_key(alice.key).prefix
    compared = []

    def recording_digest_matches(raw: str, stored: str) -> bool:
        compared.append(raw)
        return keys.digest_matches(raw, stored)

    monkeypatch.setattr(authentication, "digest_matches", recording_digest_matches)
    assert_error(make_client(forged).get(URL), 401, "unauthorized")
    assert make_client(alice.key).get(URL).status_code == 200
    assert compared == [forged, alice.key]


def _key_updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "workspaces_apikey" in q["sql"]]


@pytest.mark.django_db
def test_last_used_at_is_written_at_most_once_a_minute(alice):
    assert ApiKey.objects.get(user=alice.user).last_used_at is None
    with CaptureQueriesContext(connection) as queries:
        assert alice.client.get(URL).status_code == 200
        assert alice.client.get(URL).status_code == 200
    assert len(_key_updates(queries)) == 1
    first_use = ApiKey.objects.get(user=alice.user).last_used_at
    assert abs(timezone.now() - first_use) < dt.timedelta(seconds=10)

    two_minutes_ago = first_use - dt.timedelta(minutes=2)
    ApiKey.objects.filter(user=alice.user).update(last_used_at=two_minutes_ago)
    with CaptureQueriesContext(connection) as queries:
        assert alice.client.get(URL).status_code == 200
    assert len(_key_updates(queries)) == 1
    assert ApiKey.objects.get(user=alice.user).last_used_at > first_use


@pytest.mark.django_db
def test_missing_malformed_unknown_revoked_and_expired_keys_get_one_identical_401(alice, bob, workspace):
    from workspaces.services import api_key_create, api_key_revoke

    ApiKey.objects.filter(user=bob.user).update(revoked_at=timezone.now())
    expired = api_key_create(workspace=workspace, user=alice.user, expires_at=timezone.now() - dt.timedelta(seconds=1))
    revoked = api_key_create(workspace=workspace, user=alice.user)
    api_key_revoke(api_key=revoked.api_key)
    responses = {
        "missing": make_client(None).get(URL),
        "wrong scheme": make_client(None).get(URL, HTTP_AUTHORIZATION=f"Token {alice.key}"),
        "malformed": make_client("tnx_nope").get(URL),
        "unknown": make_client(keys.generate_key()).get(URL),
        "revoked": make_client(revoked.secret).get(URL),
        "revoked member key": bob.client.get(URL),
        "expired": make_client(expired.secret).get(URL),
    }
    bodies = {name: (r.status_code, r.content) for name, r in responses.items()}
    assert len(set(bodies.values())) == 1, bodies
    assert_error(responses["revoked"], 401, "unauthorized")
    assert all(r["WWW-Authenticate"] == 'Bearer realm="api"' for r in responses.values())
    assert alice.client.get(URL).status_code == 200


# --- the row-level-security workspace, set by the key's lookup -----------------------------------
def _settings_sent(queries) -> list[str]:
    return [q["sql"] for q in queries if "set_config" in q["sql"]]


@pytest.mark.django_db
def test_a_key_request_sets_its_workspace_in_the_statement_that_finds_the_key(alice, outsider, other_workspace):
    thread = ThreadFactory(workspace=ApiKey.objects.get(user=alice.user).workspace, user=alice.user)
    ThreadFactory(workspace=other_workspace, user=outsider.user)
    with CaptureQueriesContext(connection) as queries:
        response = alice.client.get("/api/v1/chat/threads")
    assert [t["id"] for t in response.json()["results"]] == [thread.pk]  # RLS (forced here) let them through
    (sent,) = _settings_sent(queries)
    assert "workspaces_apikey" in sent


@pytest.mark.django_db
def test_a_session_request_sets_its_workspace_on_its_own(alice, workspace):
    thread = ThreadFactory(workspace=workspace, user=alice.user)
    client = APIClient()
    client.force_login(alice.user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/chat/threads")
    assert [t["id"] for t in response.json()["results"]] == [thread.pk]
    assert _settings_sent(queries) == [f"SELECT set_config('tenex.workspace_id', '{workspace.pk}', true)"]


def _authenticate_as_a_scoped_view(raw: str) -> tuple[bool, str | None, str | None]:
    """Authenticate the way a scoped viewset asks to (in a transaction, the workspace wanted): whether
    the key was accepted, the workspace set in the transaction after it, and the one reported set."""
    request = SimpleNamespace(META={"HTTP_AUTHORIZATION": f"Bearer {raw}", "REMOTE_ADDR": "192.0.2.1"})
    setattr(request, authentication.SETS_DATABASE_WORKSPACE, True)
    with transaction.atomic():
        try:
            accepted = authentication.ApiKeyAuthentication().authenticate(request) is not None
        except AuthenticationFailed:
            accepted = False
        found = database_workspace()
        transaction.set_rollback(True)  # the setting must not outlive this helper
    return accepted, found, getattr(request, authentication.DATABASE_WORKSPACE_SET, None)


@pytest.mark.django_db
def test_only_a_key_that_authenticates_sets_the_workspace(alice, bob, workspace):
    from workspaces.services import api_key_create, api_key_revoke

    assert _authenticate_as_a_scoped_view(alice.key) == (True, workspace.pk, workspace.pk)
    forged = _with_valid_checksum(alice.key[4:12] + keys.generate_key()[12:36])  # the right prefix
    revoked = api_key_create(workspace=workspace, user=alice.user)
    api_key_revoke(api_key=revoked.api_key)
    expired = api_key_create(workspace=workspace, user=alice.user, expires_at=timezone.now() - dt.timedelta(seconds=1))
    for refused in (forged, revoked.secret, expired.secret, keys.generate_key()):
        assert _authenticate_as_a_scoped_view(refused) == (False, None, None)
    ApiKey.objects.filter(user=bob.user).update(expires_at=timezone.now() + dt.timedelta(minutes=1))
    assert _authenticate_as_a_scoped_view(bob.key) == (True, workspace.pk, workspace.pk)
