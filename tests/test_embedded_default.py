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
