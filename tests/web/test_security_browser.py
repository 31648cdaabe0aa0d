"""The pages work under their Content-Security-Policy, in headless Chromium: the web UI (sign in, send
a message, watch the reply stream), the admin and the API docs, with no CSP violation reported.

The server and the browser are test_browser.py's (daphne on the embedded default, DEBUG off).
Violations are caught twice: a `securitypolicyviolation` listener that Chromium adds to every
document before its own scripts run (through the DevTools protocol, so the page's policy does not
apply to it), and the console's "Refused to ..." messages.
"""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
from django.conf import settings
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from tests.test_embedded_default import ROOT
from tests.web.test_browser import (  # noqa: F401 - fixtures
    EMAIL,
    GROUNDED,
    QUESTION,
    browser,
    last_reply,
    log_in,
    send,
    text_of,
    wait,
    watch_reply,
    web_server,
)

pytestmark = pytest.mark.slow
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${where}`);
});
"""
# Until Swagger UI is served from drf-spectacular-sidecar (the offline docs change), /api/docs/
# loads its scripts from a CDN and starts them with an inline script: both refused by the policy.
DOCS_SELF_HOSTED = settings.SPECTACULAR_SETTINGS.get("SWAGGER_UI_DIST") == "SIDECAR"


def policy(headers) -> dict[str, list[str]]:
    directives = {}
    for part in headers["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.fixture(scope="module")
def staff_server(request):
    """test_browser's server, its member made staff so the admin opens for them."""
    base, data = request.getfixturevalue("web_server")
    skip = {"DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "TENEX_TESTING"}
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(TENEX_DATA_DIR=str(data), DJANGO_SECRET_KEY="only-for-a-management-command")
    make_staff = (
        "from workspaces.models import User; "
        f"User.objects.filter(email={EMAIL!r}).update(is_staff=True, is_superuser=True)"
    )
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "manage.py", "shell", "-c", make_staff],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    return base


@pytest.fixture
def watched(request):
    """test_browser's Chromium, collecting CSP violations in every page it opens."""
    driver = request.getfixturevalue("browser")
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COLLECT_VIOLATIONS})
    return driver


def violations(driver) -> list[str]:
    """What the current page's policy refused so far, from the listener and the console."""
    found = list(driver.execute_script("return window.__cspViolations || []"))
    found += [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    return found


@pytest.mark.parametrize("path", ["/login", "/chat/", "/admin/login/", "/api/docs/", "/api/v1/schema/", "/healthz"])
def test_every_response_carries_the_policy(staff_server, path):
    directives = policy(httpx.get(f"{staff_server}{path}", timeout=10).headers)
    assert directives["default-src"] == ["'self'"] and directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"] and directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["base-uri"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]


def test_the_web_ui_streams_a_reply_under_the_policy(staff_server, watched):
    base = staff_server
    watched.get(f"{base}/login")
    assert violations(watched) == []
    log_in(watched, base)
    assert violations(watched) == []
    watched.find_element(By.CSS_SELECTOR, "[data-action=new-thread]").click()
    send(watched, QUESTION)  # the thread is created by its first message
    wait(watched).until(EC.url_matches(rf"^{base}/chat/thr_\w+$"))
    seen = watch_reply(watched)
    reply = last_reply(watched)
    assert reply.get_attribute("data-status") == "complete" and GROUNDED in text_of(reply)
    assert len(seen) > 10  # it arrived word by word
    assert violations(watched) == []
    watched.refresh()
    wait(watched).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#messages li.message.assistant")))
    assert violations(watched) == []


def test_the_admin_works_under_the_policy(staff_server, watched):
    base = staff_server
    watched.get(f"{base}/admin/login/")
    wait(watched).until(EC.presence_of_element_located((By.ID, "id_username")))
    assert violations(watched) == []
    log_in(watched, base)
    for path in ("/admin/", "/admin/workspaces/workspace/", "/admin/workspaces/user/"):
        watched.get(f"{base}{path}")
        wait(watched).until(EC.presence_of_element_located((By.ID, "content")))
        assert "Log in" not in watched.title, path
        assert violations(watched) == [], path
    # A change form, with its scripts (related-object widgets, date shortcuts, the actions bar).
    watched.get(f"{base}/admin/workspaces/workspace/")
    watched.find_element(By.CSS_SELECTOR, "#result_list tbody th a").click()
    wait(watched).until(EC.presence_of_element_located((By.CSS_SELECTOR, "form#workspace_form")))
    assert violations(watched) == []


@pytest.mark.xfail(not DOCS_SELF_HOSTED, strict=True, reason="/api/docs/ loads Swagger UI from a CDN here")
def test_the_api_docs_work_under_the_policy(staff_server, watched):
    watched.get(f"{staff_server}/api/docs/")
    wait(watched).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .opblock")))
    watched.find_element(By.CSS_SELECTOR, ".swagger-ui .opblock-summary").click()
    wait(watched).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .opblock-body")))
    assert violations(watched) == []
