"""The README's run command on the embedded default: SQLite, in-process stream store, local assistant."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, joined_deltas, parse_sse

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def embedded_server(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "TENEX_TESTING"}}
    env.update(TENEX_DATA_DIR=str(tmp_path), PORT=str(port), TENEX_LOCAL_TOKEN_DELAY_MS="5")
    process = subprocess.Popen(
        ["bash", "scripts/serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    output = ""
    key = None
    deadline = time.monotonic() + 120
    while key is None:
        line = process.stdout.readline()
        if not line and process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve did not print a key:\n{output}")
        output += line
        found = re.search(r"Demo API key: (tnx_\w+)", line)
        if found:
            key = found.group(1)
    base = f"http://127.0.0.1:{port}"
    # The banner is printed once the server listens: what it shows works at once, no retrying.
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    try:
        yield base, key, output
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def test_serve_prints_a_working_key_and_streams_on_sqlite(embedded_server, tmp_path):
    base, key, output = embedded_server
    assert f"http://127.0.0.1:{base.rsplit(':', 1)[1]}" in output
    assert (tmp_path / "tenex.sqlite3").exists()
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{base}/readyz").json()["status"] == "ok"
    thread = httpx.post(f"{base}/api/v1/chat/threads", json={"title": "Smoke"}, headers=auth).json()
    with httpx.stream(
        "POST", f"{base}/api/v1/chat/threads/{thread['id']}/messages", json={"content": "What do we sell?"},
        headers={**auth, "Accept": "text/event-stream"}, timeout=30,
    ) as response:
        assert response.status_code == 200
        events = parse_sse(response.read())
    assert events[-1]["event"] == "done"
    assert joined_deltas(events) == events[-1]["data"]["message"]["content"]
    assert any(e["event"] == "tool_call" for e in events)
    reply_id = events[-1]["data"]["message_id"]
    resumed = httpx.get(
        f"{base}/api/v1/chat/threads/{thread['id']}/messages/{reply_id}/stream",
        headers={**auth, "Last-Event-ID": "3"}, timeout=30,
    )
    assert parse_sse(resumed.content) == events[3:]
    history = httpx.get(f"{base}/api/v1/chat/threads/{thread['id']}/messages", headers=auth).json()["results"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    listed = httpx.get(f"{base}/api/v1/chat/threads", headers=auth).json()["results"]
    assert listed[0]["id"] == thread["id"] and listed[0]["message_count"] == 2


def test_serve_is_idempotent_about_the_demo_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TENEX_TESTING"}}
    env.update(TENEX_DATA_DIR=str(tmp_path), DJANGO_DEBUG="true")
    python = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    first = subprocess.run(
        [python, "manage.py", "demo_setup"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    second = subprocess.run(
        [python, "manage.py", "demo_setup"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    assert first.stdout.strip().splitlines()[-1] == second.stdout.strip().splitlines()[-1]
    assert first.stdout.strip().startswith("tnx_")


def test_search_on_sqlite_uses_fts5_with_prefixes_and_snippets(embedded_server):
    """`?q=` on the thread list and on a thread's messages, on the embedded default (FTS5)."""
    base, key, _ = embedded_server
    auth = {"Authorization": f"Bearer {key}"}
    threads = f"{base}/api/v1/chat/threads"
    wanted = httpx.post(threads, json={"title": "Monday call"}, headers=auth).json()["id"]
    titled = httpx.post(threads, json={"title": "Pricing questions"}, headers=auth).json()["id"]
    httpx.post(threads, json={"title": "Launch plan"}, headers=auth)
    sent = httpx.post(
        f"{threads}/{wanted}/messages", headers=auth,
        json={"content": "Our pricing changed: the Pro plan is now 49 dollars per seat."},
    )
    assert sent.status_code == 202, sent.text
    user_message = sent.json()["user_message"]["id"]
    reply = sent.json()["assistant_message"]["id"]
    httpx.get(f"{threads}/{wanted}/messages/{reply}/stream", headers=auth, timeout=30)  # let the reply finish

    def highlighted(hit: dict) -> list[str]:
        return [hit["snippet"][start:end].lower() for start, end in hit["highlights"]]

    found = httpx.get(threads, params={"q": "pric"}, headers=auth).json()["results"]
    assert {t["id"] for t in found} == {wanted, titled}
    by_id = {t["id"]: t["search"] for t in found}
    # The best match of the thread: the user's message, or the reply if it quoted pricing too.
    assert by_id[wanted]["message_id"] in {user_message, reply} and by_id[wanted]["rank"] > 0
    assert highlighted(by_id[wanted]) and all(word.startswith("pric") for word in highlighted(by_id[wanted]))
    assert by_id[titled]["message_id"] is None and highlighted(by_id[titled]) == ["pricing"]
    assert [t["id"] for t in httpx.get(threads, params={"q": "pro pric"}, headers=auth).json()["results"]] == [wanted]
    assert httpx.get(threads, params={"q": "zebra"}, headers=auth).json()["results"] == []

    messages = httpx.get(f"{threads}/{wanted}/messages", params={"q": "dollars seat"}, headers=auth).json()
    assert messages["results"][0]["id"] == user_message  # history order
    assert highlighted(messages["results"][0]["search"]) == ["dollars", "seat"]
    assert {m["id"] for m in messages["results"]} <= {user_message, reply}
    # Renaming re-indexes the title; deleting a thread takes its rows out of the index.
    httpx.patch(f"{threads}/{titled}", json={"title": "Renewal questions"}, headers=auth)
    assert [t["id"] for t in httpx.get(threads, params={"q": "renew"}, headers=auth).json()["results"]] == [titled]
    httpx.delete(f"{threads}/{wanted}", headers=auth)
    assert httpx.get(threads, params={"q": "dollars"}, headers=auth).json()["results"] == []
