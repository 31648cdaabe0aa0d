"""Sign-in throttling on both forms, the web UI's `/login` and the admin's `/admin/login/`: failures
per account and per client address lock further attempts for a while without checking the password;
a success clears the account's count; the API's Bearer keys are untouched."""

from __future__ import annotations

import re

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.test import Client

from tests.factories import MembershipFactory, UserFactory
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.django_db
LIMIT = 5  # TENEX_LOGIN_FAILURE_LIMIT's default
FORMS = {"web": "/login", "admin": "/admin/login/"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Dozens of sign-in attempts per test: a cheap hasher keeps them quick (the count is the point)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def pat(workspace):
    user = UserFactory(email="pat@acme.test", is_staff=True, is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    MembershipFactory(workspace=workspace, user=user)
    return user


def attempt(client: Client, form: str, email: str, password: str):
    return client.post(FORMS[form], {"username": email, "password": password, "next": "/chat/"})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def assert_locked_out(response) -> None:
    assert response.status_code == 429, response.status_code
    text = response.content.decode()
    assert "Too many failed sign-in attempts" in text and "Try again in 15 minutes." in text
    assert response["Retry-After"] == str(15 * 60)


@pytest.fixture
def password_checks(monkeypatch) -> list[str]:
    """Every password the user model checks, as it checks them."""
    from workspaces.models import User

    seen: list[str] = []
    original = User.check_password

    def spy(self, raw):
        seen.append(raw)
        return original(self, raw)

    monkeypatch.setattr(User, "check_password", spy)
    return seen


@pytest.mark.parametrize("form", FORMS)
def test_an_account_is_locked_after_the_failure_limit_and_the_password_goes_unchecked(form, pat, password_checks):
    client = Client()
    for number in range(LIMIT - 1):
        response = attempt(client, form, "pat@acme.test", f"guess-{number}")
        assert response.status_code == 200  # the form again, with its usual error
    # The last allowed failure locks: its answer already says so.
    assert_locked_out(attempt(client, form, "pat@acme.test", "guess-last"))
    checked = len(password_checks)
    # Even the right password is refused now, unchecked, and signs nobody in; so is any spelling of the email.
    assert_locked_out(attempt(client, form, "pat@acme.test", PASSWORD))
    assert_locked_out(attempt(Client(REMOTE_ADDR="198.51.100.7"), form, " PAT@Acme.Test", PASSWORD))
    assert len(password_checks) == checked and PASSWORD not in password_checks
    assert not signed_in(client)


@pytest.mark.parametrize("form", FORMS)
def test_one_address_is_locked_after_failures_on_many_accounts(form, pat):
    client = Client(REMOTE_ADDR="203.0.113.9")
    for number in range(LIMIT - 1):
        assert attempt(client, form, f"nobody{number}@acme.test", "guess").status_code == 200
    assert_locked_out(attempt(client, form, "someone@acme.test", "guess"))
    assert_locked_out(attempt(client, form, "pat@acme.test", PASSWORD))
    # The account itself is not locked: from elsewhere it signs in.
    other = Client(REMOTE_ADDR="203.0.113.10")
    assert attempt(other, form, "pat@acme.test", PASSWORD).status_code == 302
    assert signed_in(other)


@pytest.mark.parametrize("form", FORMS)
def test_a_success_clears_the_accounts_count(form, pat):
    client = Client()
    for _ in range(2):
        for number in range(LIMIT - 1):
            assert attempt(client, form, "pat@acme.test", f"guess-{number}").status_code == 200
        assert attempt(client, form, "pat@acme.test", PASSWORD).status_code == 302
        client.logout()
    # Eight failures in all, never the limit in a row: the account still signs in.
    assert attempt(client, form, "pat@acme.test", PASSWORD).status_code == 302


def test_the_lock_is_shared_by_both_forms(pat):
    for number in range(LIMIT):
        attempt(Client(), "web", "pat@acme.test", f"guess-{number}")
    assert_locked_out(attempt(Client(), "admin", "pat@acme.test", PASSWORD))


def test_an_address_that_looks_like_an_email_field_cannot_lock_that_address(pat):
    """Axes keys accounts and addresses by their bare value: a "username" that is an address must
    not count against that address."""
    attacker = Client(REMOTE_ADDR="198.51.100.66")
    for _ in range(LIMIT + 2):
        attempt(attacker, "web", "127.0.0.1", "guess")
    assert attempt(Client(), "web", "pat@acme.test", PASSWORD).status_code == 302


def test_api_keys_are_untouched_by_sign_in_throttling(pat, alice):
    for number in range(LIMIT + 1):
        attempt(Client(), "web", "alice@acme.test", f"guess-{number}")
    assert alice.client.get("/api/v1/workspace").status_code == 200


def test_the_lockout_page_sends_no_inline_script(pat):
    for number in range(LIMIT):
        response = attempt(Client(), "web", "pat@acme.test", f"guess-{number}")
    assert not re.search(rb"<script(?![^>]*\bsrc=)", response.content)
    assert b" style=" not in response.content
    assert check_password(PASSWORD, pat.password)  # nothing about the account changed


# --- Across processes ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_failures_on_two_processes_count_together(pat):
    from tests.processes import daphne_process

    env = {"TENEX_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"]}
    with daphne_process(**env) as (a, _), daphne_process(**env) as (b, _):
        statuses = [web_login(base, "pat@acme.test", "wrong") for base in (a, b, a, b)]
        assert statuses == [200, 200, 200, 200]
        assert web_login(b, "pat@acme.test", "wrong") == 429  # the fifth, on either process
        assert web_login(a, "pat@acme.test", PASSWORD) == 429


def web_login(base: str, email: str, password: str) -> int:
    with httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/login")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = client.post(
            "/login", data={"username": email, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/login"},
        )
        return response.status_code


def test_support_unlocks_an_account_with_axes_reset_username(pat):
    from io import StringIO

    from django.core.management import call_command

    for number in range(LIMIT):  # from five addresses: the account is locked, no address is
        attempt(Client(REMOTE_ADDR=f"198.51.100.{number + 1}"), "web", "pat@acme.test", "guess")
    assert_locked_out(attempt(Client(), "web", "pat@acme.test", PASSWORD))
    call_command("axes_reset_username", "pat@acme.test", stdout=StringIO())
    assert attempt(Client(), "web", "pat@acme.test", PASSWORD).status_code == 302


def test_an_unreachable_redis_leaves_sign_in_and_the_api_working_uncounted(pat, alice, settings):
    from tests.helpers import free_port

    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }}
    client = Client()
    for number in range(LIMIT + 1):
        assert attempt(client, "web", "pat@acme.test", f"guess-{number}").status_code == 200
    assert attempt(client, "admin", "pat@acme.test", PASSWORD).status_code == 302
    assert alice.client.get("/api/v1/workspace").status_code == 200
    assert Client().get("/api/v1/workspace", HTTP_AUTHORIZATION="Bearer tnx_nope").status_code == 401
