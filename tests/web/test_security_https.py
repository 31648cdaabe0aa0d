"""`TENEX_HTTPS=true`, the production switch for running behind a TLS-terminating proxy: the deploy
check is clean, plain HTTP is redirected (health checks excepted), HSTS and secure cookies on HTTPS."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import httpx
import pytest
from django.conf import settings

from tests.web.conftest import PASSWORD

HTTPS = {"X-Forwarded-Proto": "https"}
DEPLOY_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    environment.update(DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_DEBUG="false", TENEX_TESTING="0", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True, timeout=120,
    )


def test_the_deploy_check_is_clean_in_https_mode():
    result = deploy_check(TENEX_HTTPS="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_without_the_switch_the_deploy_check_names_what_is_missing():
    result = deploy_check(TENEX_HTTPS="false")
    assert result.returncode != 0
    assert all(code in result.stderr for code in DEPLOY_WARNINGS), result.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_behind_a_tls_proxy(alice):
    from tests.processes import daphne_process

    alice.user.set_password(PASSWORD)
    alice.user.save()
    with daphne_process(TENEX_HTTPS="true") as (base, _):
        host = base.removeprefix("http://")
        # A load balancer's health checks answer over plain HTTP.
        for path in ("/healthz", "/readyz"):
            response = httpx.get(f"{base}{path}", timeout=10)
            assert response.status_code == 200 and "strict-transport-security" not in response.headers
        # Everything else is sent to HTTPS.
        for path in ("/login", "/chat/", "/api/v1/workspace", "/admin/"):
            response = httpx.get(f"{base}{path}", timeout=10)
            assert response.status_code == 301 and response.headers["Location"] == f"https://{host}{path}"
        # Through the proxy (X-Forwarded-Proto: https): HSTS, secure cookies, a working sign-in and API.
        with httpx.Client(base_url=base, headers=HTTPS, timeout=10) as client:
            page = client.get("/login")
            assert page.status_code == 200
            assert page.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
            assert "secure" in _cookie_flags(page, "csrftoken")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            # The client speaks plain HTTP to the test's "proxy", so it holds back Secure cookies: send it.
            csrf_cookie = page.cookies["csrftoken"]
            signed_in = client.post(
                "/login", data={"username": alice.user.email, "password": PASSWORD, "csrfmiddlewaretoken": token},
                headers={"Referer": f"https://{host}/login", "Cookie": f"csrftoken={csrf_cookie}"},
            )
            assert signed_in.status_code == 302, signed_in.text[:500]
            assert "secure" in _cookie_flags(signed_in, "sessionid")
            api = client.get("/api/v1/workspace", headers={"Authorization": f"Bearer {alice.key}"})
            assert api.status_code == 200 and "Strict-Transport-Security" in api.headers


def _cookie_flags(response: httpx.Response, name: str) -> list[str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return [part.strip().lower() for part in header.split(";")[1:]]
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")

