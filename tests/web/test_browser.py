"""End to end in headless Chromium: log in, start a thread, watch the reply stream, stop one, resume one.

The service runs as a real daphne process on the embedded default (SQLite, in-process stream store,
local assistant) with DEBUG off, so the page's CSS and JS come from the app itself. Chromium is driven through
Selenium and the Debian chromium-driver: explicit waits and real input events, no page scripts of
our own beyond two small probes. Skipped only where Chromium is not installed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import free_port
from tests.test_embedded_default import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("TENEX_REQUIRE_BROWSER") == "1":  # CI installs Chromium: a skip there is a failure
        raise RuntimeError("TENEX_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
    pytest.skip(
        "headless Chromium is not installed (apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow

EMAIL = "pat@tenex.local"
SAM = "sam@tenex.local"
STAFF = "support@tenex.local"  # a member of their own for the small-things test
PASSWORD = "streaming-words-42"
QUESTION = "How much does the Pro plan cost per seat?"
GROUNDED = "The Pro plan costs 49 euros per seat per month, billed yearly."
PRICING_DOCUMENT = (
    f"# Pro plan pricing\n\n"
    f"{GROUNDED} Every Pro seat includes unlimited threads, shared knowledge "
    "and priority support from our team in Lisbon.\n\n"
    "# Team plan pricing\n\n"
    "The Team plan costs 19 euros per seat per month. Team seats share one knowledge base and the same assistant, "
    "and can move to the Pro plan at any time without losing history.\n\n"
    "# Enterprise pricing\n\n"
    "Enterprise pricing per seat is agreed per contract, with single sign-on, audit logs, "
    "a dedicated success manager and a signed data processing agreement for every workspace.\n"
)
# The member who logs in, and the knowledge the local assistant grounds its replies in.
SETUP = f"""
from knowledge.services import document_create
from workspaces.models import Membership
from workspaces.services import member_ensure, workspace_create
from workspaces.tenancy import Scope, tenant_context
workspace = workspace_create(slug="e2e", name="E2E workspace")
user = member_ensure(workspace=workspace, email={EMAIL!r}, name="Pat", role=Membership.Role.OWNER)
user.set_password({PASSWORD!r})
user.save()
sam = member_ensure(workspace=workspace, email={SAM!r}, name="Sam", role=Membership.Role.MEMBER)
sam.set_password({PASSWORD!r})
sam.save()
with tenant_context(workspace.pk):
    service = Scope(workspace_id=workspace.pk, user_id=None, is_service=True)
    document_create(scope=service, title="Pricing", body={PRICING_DOCUMENT!r})
import os
from pathlib import Path
from workspaces.services import api_key_create
Path(os.environ["TENEX_DATA_DIR"], "api_key").write_text(api_key_create(workspace=workspace, name="docs").secret)
from chat.models import Message, Thread
from workspaces.models import User
User.objects.create_superuser(email={STAFF!r}, password={PASSWORD!r})
with tenant_context(workspace.pk):
    lee = member_ensure(workspace=workspace, email="lee@initech.example", name="Lee", role=Membership.Role.MEMBER)
    thread = Thread.objects.create(workspace=workspace, user=lee, title="Pro plan seats for Initech", message_count=2)
    Message.objects.create(workspace=workspace, thread=thread, position=1, role="user",
                           content="How much would 12 Pro seats cost us per month?")
    Message.objects.create(
        workspace=workspace, thread=thread, position=2, role="assistant",
        usage={{"input_tokens": 914, "output_tokens": 61}},
        content="12 Pro seats cost 588 euros per month (49 euros per seat, billed yearly).",
        tool_calls=[{{"id": "call_1", "name": "search_knowledge", "status": "complete",
                     "arguments": {{"query": "Pro plan price per seat"}},
                     "result": {{"passages": [
                         {{"document_id": "doc_1", "title": "Pricing", "text": {GROUNDED!r}}}]}}}}],
    )
Path(os.environ["TENEX_DATA_DIR"], "support_thread").write_text(thread.pk)
"""
# Cuts the first reply's own stream after a few chunks, as a dropped connection would.
CUT_FIRST_STREAM = """
window.__requests = [];
const realFetch = window.fetch;
window.fetch = async function (url, init) {
  const headers = (init && init.headers) || {};
  window.__requests.push({url: String(url), method: (init && init.method) || "GET",
                          lastEventId: headers["Last-Event-ID"] || null});
  const response = await realFetch(url, init);
  if (!(init && init.method === "POST" && String(url).endsWith("/messages")) || window.__cut) return response;
  window.__cut = true;
  const reader = response.body.getReader();
  let chunks = 0;
  const body = new ReadableStream({
    async pull(controller) {
      if (chunks++ >= 5) { reader.cancel(); controller.error(new TypeError("network error")); return; }
      const {done, value} = await reader.read();
      if (done) controller.close(); else controller.enqueue(value);
    },
  });
  return new Response(body, {status: response.status, headers: response.headers});
};
"""
PARSE_CHUNKS = """
const events = [];
const parser = window.TenexChat.createSSEParser((e) => events.push(e));
for (const chunk of arguments[0]) parser.push(chunk);
return events;
"""


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    """daphne on the embedded default (SQLite, in-process streams) over a fresh data dir, DEBUG off."""
    data = tmp_path_factory.mktemp("web-e2e")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "TENEX_TESTING"}}
    env.update(TENEX_DATA_DIR=str(data), TENEX_LOCAL_TOKEN_DELAY_MS="20", DJANGO_SECRET_KEY=secrets.token_urlsafe(40))
    venv = ROOT / ".venv" / "bin"
    for command in (["migrate", "--noinput"], ["shell", "-c", SETUP]):
        subprocess.run([str(venv / "python"), "manage.py", *command], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=120)
    log = data / "daphne.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(venv / "daphne"), "-b", "127.0.0.1", "-p", str(port), "tenex.asgi:application"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base, process, log)
        yield base, data
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def _wait_until_healthy(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"daphne did not answer:\n{log.read_text()[-3000:]}")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,860",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, seconds: float = 20) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.02)


def last_reply(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#messages li.message.assistant")[-1]


def text_of(element) -> str:
    return element.find_element(By.CSS_SELECTOR, ".message-content").get_property("textContent")


def send(driver, content: str) -> None:
    box = driver.find_element(By.ID, "composer-input")
    box.send_keys(content)
    box.send_keys(Keys.ENTER)


def watch_reply(driver) -> list[str]:
    """The reply's text each time it changed, until it is no longer streaming."""
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = last_reply(driver)
        text, status = text_of(reply), reply.get_attribute("data-status")
        if not seen or seen[-1] != text:
            seen.append(text)
        if status != "streaming" and reply.get_attribute("data-message-id"):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"the reply did not finish: {seen[-1:]}")


def log_in(driver, base: str, email: str = EMAIL) -> None:
    driver.get(f"{base}/chat/")
    assert driver.current_url == f"{base}/login?next=/chat/"
    driver.find_element(By.ID, "id_username").send_keys(email.upper())
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver).until(EC.url_to_be(f"{base}/chat/"))


def screenshot_dir(data: Path) -> Path:
    target = Path(os.environ.get("TENEX_SCREENSHOT_DIR", data))
    target.mkdir(parents=True, exist_ok=True)
    return target


def test_log_in_chat_stream_stop_and_resume_in_chromium(web_server, browser):
    base, data = web_server
    log_in(browser, base)
    assert "No threads yet" in browser.find_element(By.CSS_SELECTOR, "nav.sidebar").text

    # A new thread starts with its first message: the reply streams in word by word, grounded.
    browser.find_element(By.CSS_SELECTOR, "[data-action=new-thread]").click()
    assert browser.current_url == f"{base}/chat/"
    send(browser, QUESTION)
    wait(browser).until(EC.url_matches(rf"^{base}/chat/thr_\w+$"))
    thread_url = browser.current_url
    seen = watch_reply(browser)
    reply = last_reply(browser)
    final = text_of(reply)
    assert reply.get_attribute("data-status") == "complete"
    assert GROUNDED in final and final.startswith("Here is what your knowledge base says")
    assert len(seen) > 10 and all(final.startswith(partial) for partial in seen), seen[:5]
    tool = reply.find_element(By.CSS_SELECTOR, "details.tool-call")
    assert "search_knowledge" in tool.text and "complete" in tool.text
    wait(browser).until(EC.invisibility_of_element_located((By.ID, "stop-button")))
    assert browser.find_element(By.ID, "send-button").is_enabled()

    # Reloaded: the same history from the server, and the thread titled by its first message.
    browser.get(thread_url)
    messages = browser.find_elements(By.CSS_SELECTOR, "#messages li.message")
    assert [m.get_attribute("data-role") for m in messages] == ["user", "assistant"]
    assert text_of(messages[0]) == QUESTION and text_of(messages[1]) == final
    current = browser.find_element(By.CSS_SELECTOR, "#recent-threads li.thread-item.current")
    assert current.text.startswith(QUESTION)
    assert browser.find_element(By.ID, "thread-title").text == QUESTION
    shots = screenshot_dir(data)
    browser.save_screenshot(str(shots / "thread.png"))

    # Stop: the reply keeps what it had and says it was stopped.
    send(browser, "What does the Team plan cost per seat?")
    wait(browser).until(lambda d: len(text_of(last_reply(d))) > 20)
    browser.find_element(By.ID, "stop-button").click()
    watch_reply(browser)
    stopped = last_reply(browser)
    assert stopped.get_attribute("data-status") == "cancelled"
    assert "Stopped" in stopped.find_element(By.CSS_SELECTOR, ".message-head").text
    stopped_text = text_of(stopped)
    browser.save_screenshot(str(shots / "thread-stopped.png"))
    assert stopped_text and "data processing agreement" not in stopped_text

    # A dropped connection: the page resumes from the stream endpoint with Last-Event-ID.
    browser.execute_script(CUT_FIRST_STREAM)
    send(browser, "Tell me about Enterprise pricing per seat.")
    watch_reply(browser)
    resumed = last_reply(browser)
    assert resumed.get_attribute("data-status") == "complete"
    requests = browser.execute_script("return window.__requests")
    resumes = [r for r in requests if r["url"].endswith("/stream")]
    assert resumes and int(resumes[0]["lastEventId"]) >= 1, requests
    resumed_text = text_of(resumed)
    browser.get(thread_url)
    history = browser.find_elements(By.CSS_SELECTOR, "#messages li.message")
    assert len(history) == 6
    assert text_of(history[3]) == stopped_text and text_of(history[5]) == resumed_text  # no gap, no repeat
    assert "data processing agreement" in resumed_text

    # The page's SSE parser copes with chunks cut anywhere, CRLF split in two, and comments.
    chunks = ["id: 1\r", "\nevent: delta\r\ndata: {\"a\"", ":1}\r\n\r\n: ping\n\n", "id: 2\ndata: x\ndata: y\n\n"]
    assert browser.execute_script(PARSE_CHUNKS, chunks) == [
        {"id": "1", "event": "delta", "data": '{"a":1}'},
        {"id": "2", "event": "message", "data": "x\ny"},
    ]

    # Pin it from the header: the sidebar shows it under Pinned; then the page as people see it.
    browser.find_element(By.CSS_SELECTOR, ".thread-header [data-action=pin]").click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#pinned-threads li.thread-item.current")))
    browser.save_screenshot(str(shots / "thread-pinned.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors


REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def same_origin_only(driver, base: str) -> list[str]:
    """Every resource the page loaded that did not come from the server itself."""
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    return [url for url in loaded + [driver.current_url] if not url.startswith(base + "/")]


def test_api_docs_work_offline_and_try_it_out_answers_200(web_server, browser):
    base, data = web_server
    key = (data / "api_key").read_text().strip()
    browser.get(f"{base}/api/docs/")
    # The operations render from the pinned sidecar assets; nothing comes from anywhere else.
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 10)
    assert same_origin_only(browser, base) == []
    scripts = browser.find_elements(By.TAG_NAME, "script")
    assert scripts and all(s.get_attribute("src") for s in scripts)  # no inline script
    assert not browser.find_elements(By.CSS_SELECTOR, f"style, link[href^='http']:not([href^='{base}'])")

    # Authorize with the key, then "Try it out" on GET /api/v1/workspace.
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    field = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, ".auth-container input")))
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .btn-done").click()
    path = browser.find_element(By.CSS_SELECTOR, ".opblock-get .opblock-summary-path[data-path='/api/v1/workspace']")
    operation = path.find_element(By.XPATH, "./ancestor::div[contains(@class, 'opblock-get')]")
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait(browser).until(lambda d: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    operation.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    wait(browser).until(lambda d: operation.find_elements(By.CSS_SELECTOR, ".execute"))
    operation.find_element(By.CSS_SELECTOR, ".execute").click()
    status = wait(browser).until(
        lambda d: operation.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
    )[0]
    assert status.text.strip() == "200"
    body = operation.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_description").text
    assert '"slug": "e2e"' in body

    # ReDoc renders every operation from the same assets.
    browser.get(f"{base}/api/redoc/")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-section-id^='operation/']")) > 10)
    # The one outside request is the bundle's own: Redocly's sidebar logo, an <img> it drops when the
    # load fails (offline) or is refused (CSP). Nothing the page needs.
    assert same_origin_only(browser, base) in ([], [REDOC_LOGO])
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and REDOC_LOGO not in e["message"]]
    assert errors == [], errors


THREAD_COUNT = """
const done = arguments[arguments.length - 1];
fetch("/api/v1/chat/threads?archived=true", {credentials: "same-origin"}).then((r) => r.json()).then((archived) =>
  fetch("/api/v1/chat/threads", {credentials: "same-origin"}).then((r) => r.json())
    .then((active) => done(active.results.length + archived.results.length)));
"""
COLORS = """
const style = getComputedStyle(arguments[0]);
return [style.color, style.backgroundColor];
"""


def luminance(css: str) -> float:
    channels = [int(v) / 255 for v in css[css.index("(") + 1:css.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two opaque CSS rgb() colours."""
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def overlaps(a, b) -> bool:
    ra, rb = a.rect, b.rect
    return not (ra["x"] + ra["width"] <= rb["x"] or rb["x"] + rb["width"] <= ra["x"]
                or ra["y"] + ra["height"] <= rb["y"] or rb["y"] + rb["height"] <= ra["y"])


def test_small_things_new_thread_toast_labels_archived_contrast_and_drawer(web_server, browser):
    base, data = web_server
    log_in(browser, base, SAM)
    sidebar = browser.find_element(By.CSS_SELECTOR, "nav.sidebar")
    assert "No threads yet" in sidebar.text

    # "New thread" opens the composer; no thread exists until the first message is sent.
    browser.find_element(By.CSS_SELECTOR, "[data-action=new-thread]").click()
    assert browser.current_url == f"{base}/chat/"
    assert browser.switch_to.active_element.get_attribute("id") == "composer-input"
    assert browser.execute_async_script(THREAD_COUNT) == 0
    send(browser, "What does the Team plan cost per seat?")
    wait(browser).until(EC.url_matches(rf"^{base}/chat/thr_\w+$"))
    thread_url = browser.current_url
    watch_reply(browser)
    assert browser.execute_async_script(THREAD_COUNT) == 1

    # "Reply finished." shows where it covers neither the composer nor its hint.
    toast = wait(browser).until(EC.visibility_of_element_located((By.ID, "toast")))
    assert toast.text == "Reply finished."
    assert not overlaps(toast, browser.find_element(By.CSS_SELECTOR, ".composer-actions .hint"))
    assert not overlaps(toast, browser.find_element(By.ID, "composer"))

    # The sidebar's screen-reader label follows the automatic title.
    wait(browser).until(lambda d: d.find_element(By.ID, "thread-title").text != "New thread")
    title = browser.find_element(By.ID, "thread-title").text
    label = browser.find_element(By.CSS_SELECTOR, ".thread-item.current .thread-menu .visually-hidden")
    assert label.get_property("textContent") == f"Actions for {title}"

    # Archived: the list says so and shows the way to it, instead of "No threads yet".
    browser.find_element(By.CSS_SELECTOR, ".thread-header [data-action=archive]").click()
    # Read in the page, not through an element handle: the header is re-rendered as it changes, and
    # Chromium may answer a handle to the replaced node with an inspector error instead of "stale".
    badges = "const e = document.querySelector('.thread-badges'); return e ? e.textContent : '';"
    wait(browser).until(lambda d: "Archived" in d.execute_script(badges))
    browser.get(f"{base}/chat/")
    sidebar = browser.find_element(By.CSS_SELECTOR, "nav.sidebar")
    assert "No threads yet" not in sidebar.text and "1 archived" in sidebar.text
    archived = browser.find_element(By.CSS_SELECTOR, "#archived-threads .thread-title")
    assert archived.is_displayed() and archived.text == title

    # Dark mode: text on the light-purple buttons meets WCAG AA (4.5:1), computed from the page's colours.
    dark = {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", dark)
    browser.get(f"{base}/chat/")
    for selector in ("[data-action=new-thread]", "#send-button", ".brand-mark"):
        foreground, background = browser.execute_script(COLORS, browser.find_element(By.CSS_SELECTOR, selector))
        assert contrast(foreground, background) >= 4.5, (selector, foreground, background)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    # Below 600 px the thread list is a drawer: closed, the page is the conversation's; opened, it
    # lies over the page; Escape closes it again.
    browser.set_window_size(390, 844)
    browser.get(f"{base}/chat/")
    toggle = browser.find_element(By.ID, "drawer-toggle")
    sidebar = browser.find_element(By.ID, "sidebar")
    assert toggle.is_displayed() and not sidebar.is_displayed()
    composer = browser.find_element(By.ID, "composer")
    assert composer.is_displayed() and composer.rect["y"] < 844 / 2
    toggle.click()
    wait(browser).until(lambda d: sidebar.is_displayed() and sidebar.rect["x"] >= 0)
    assert toggle.get_attribute("aria-expanded") == "true" and sidebar.rect["width"] <= 390
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(browser).until(lambda d: not sidebar.is_displayed())
    assert toggle.get_attribute("aria-expanded") == "false"
    browser.get(thread_url)
    browser.find_element(By.ID, "composer-input").send_keys("And for a team of five?")
    browser.save_screenshot(str(screenshot_dir(data) / "chat-390.png"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors


def test_support_finds_a_thread_by_id_and_reads_it_in_the_admin(web_server, browser):
    base, data = web_server
    thread_id = (data / "support_thread").read_text().strip()
    browser.get(f"{base}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys(STAFF)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD + Keys.ENTER)
    box = wait(browser).until(EC.visibility_of_element_located((By.ID, "support-find-input")))
    box.send_keys(thread_id + Keys.ENTER)
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "ol.conversation")))
    turns = browser.find_elements(By.CSS_SELECTOR, "ol.conversation > li")
    assert [t.get_attribute("class") for t in turns] == ["user", "assistant"]
    assert "search_knowledge" in turns[1].text and "914 in · 61 out tokens" in turns[1].text
    browser.set_window_size(1280, 1000)
    conversation = browser.find_element(By.CSS_SELECTOR, "fieldset.module:nth-of-type(2)")
    browser.execute_script("arguments[0].scrollIntoView()", conversation)
    browser.save_screenshot(str(screenshot_dir(data) / "admin-thread.png"))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
