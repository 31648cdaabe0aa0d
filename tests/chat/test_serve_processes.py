"""`manage.py serve --processes N`: N daphne children on one port, PostgreSQL and Redis shared."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.db import connection

from chat.models import Message
from tests.chat.test_daphne_streams import THREADS, headers, read_events, stream_url
from tests.helpers import free_port, joined_deltas
from tests.processes import server_env, wait_until_healthy
from workspaces.tenancy import tenant_context

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@contextmanager
def serve(processes: int = 2, **env: str):
    """`manage.py serve --processes N` on a free port; yields its base URL and the parent process."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="tenex-test-serve-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--processes", str(processes), "--port", str(port)],
        cwd=ROOT, env={**server_env(connection.settings_dict["NAME"]), **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log_path = Path(log.name)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process, 60, "serve")
        yield base, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
        os.unlink(log.name)


def producer_pid(workspace_id: str, message_id: str) -> int:
    with tenant_context(workspace_id):
        producer = Message.objects.get(pk=message_id).producer  # host:pid:nonce, leased on send
    return int(producer.split(":")[1])


def post_reply(client: httpx.Client, key: str, thread_id: str, content: str) -> str:
    response = client.post(f"{THREADS}/{thread_id}/messages", json={"content": content}, headers=headers(key))
    assert response.status_code == 202, response.text
    return response.json()["assistant_message"]["id"]


def clients_on_two_children(base: str, key: str, workspace_id: str, thread_id: str):
    """Two kept-alive connections that landed on different children (the kernel spreads new
    connections across the children's sockets), each with the pid of the child behind it."""
    found: dict[int, httpx.Client] = {}
    for _ in range(40):
        client = httpx.Client(base_url=base, timeout=30)
        reply = post_reply(client, key, thread_id, "hi")
        pid = producer_pid(workspace_id, reply)
        if pid in found:
            client.close()
        else:
            found[pid] = client
        if len(found) == 2:
            return list(found.items())
    raise AssertionError(f"40 new connections all reached the same child: {list(found)}")


def whole_stream(client: httpx.Client, key: str, thread_id: str, reply_id: str, after: int = 0) -> list[dict]:
    with client.stream(
        "GET", stream_url("", thread_id, reply_id), headers=headers(key, **{"Last-Event-ID": str(after)})
    ) as response:
        assert response.status_code == 200
        return read_events(response)


def test_two_children_on_one_port_serve_resume_and_cancel_each_others_replies(alice, workspace):
    thread_id = alice.client.post(THREADS, {"title": "one port"}, format="json").json()["id"]
    with serve(2) as (base, parent):
        assert len(children_of(parent.pid)) == 2
        (pid_a, a), (pid_b, b) = clients_on_two_children(base, alice.key, workspace.pk, thread_id)
        assert {pid_a, pid_b} == children_of(parent.pid)

        # Produced on a, resumed on b.
        reply = post_reply(a, alice.key, thread_id, "Write a tagline for the launch")
        assert producer_pid(workspace.pk, reply) == pid_a
        with a.stream("GET", stream_url("", thread_id, reply), headers=headers(alice.key)) as response:
            first = read_events(response, count=3)
        resumed = whole_stream(b, alice.key, thread_id, reply, after=first[-1]["id"])
        events = first + resumed
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["event"] == "done"
        assert joined_deltas(events) == events[-1]["data"]["message"]["content"]

        # Produced on b, cancelled through a.
        reply = post_reply(b, alice.key, thread_id, "Tell me everything about our pricing")
        assert producer_pid(workspace.pk, reply) == pid_b
        with b.stream("GET", stream_url("", thread_id, reply), headers=headers(alice.key)) as response:
            read_events(response, count=4)
        cancelled = a.post(f"{THREADS}/{thread_id}/messages/{reply}/cancel", headers=headers(alice.key))
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        events = whole_stream(a, alice.key, thread_id, reply)
        assert events[-1]["event"] == "done" and events[-1]["data"]["message"]["status"] == "cancelled"
        assert joined_deltas(events) == cancelled.json()["content"]
        assert whole_stream(b, alice.key, thread_id, reply) == events
        a.close()
        b.close()


def test_sigterm_drains_every_child(alice, workspace):
    thread_id = alice.client.post(THREADS, {"title": "drain"}, format="json").json()["id"]
    with serve(2) as (base, parent):
        children = children_of(parent.pid)
        (_, a), (_, b) = clients_on_two_children(base, alice.key, workspace.pk, thread_id)
        replies = [post_reply(c, alice.key, thread_id, "Tell me everything about our pricing") for c in (a, b)]
        for client, reply in zip((a, b), replies, strict=True):
            with client.stream("GET", stream_url("", thread_id, reply), headers=headers(alice.key)) as response:
                read_events(response, count=3)
            client.close()
        parent.send_signal(signal.SIGTERM)  # as a deploy or a scale-down sends it, to the parent alone
        assert parent.wait(40) == 0, parent.log_path.read_text()[-3000:]
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
        output = parent.log_path.read_text()
        assert "Traceback" not in output, output[-3000:]
    with tenant_context(workspace.pk):
        finished = {m.pk: (m.status, m.content) for m in Message.objects.filter(pk__in=replies)}
    assert {status for status, _ in finished.values()} == {"complete"}, finished
    assert all(len(content.split()) > 10 for _, content in finished.values())


def test_refuses_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TENEX_TESTING"}}
    env.update(TENEX_DATA_DIR=str(tmp_path), DJANGO_DEBUG="true")
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--processes", "2", "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "need PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)" in result.stderr


def test_a_child_that_dies_is_replaced(alice):
    with serve(2) as (base, parent):
        before = children_of(parent.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            now = children_of(parent.pid)
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, f"not replaced: {now}"
            time.sleep(0.1)
        # New connections, spread over both children, are all answered (those that reach the new
        # child while it starts wait on its socket).
        for _ in range(20):
            assert httpx.get(f"{base}/api/v1/workspace", headers=headers(alice.key), timeout=60).status_code == 200
        assert f"daphne process {victim} exited" in parent.log_path.read_text()


# --- the children's pools and PostgreSQL's max_connections --------------------------------------
def test_connection_slots_are_what_the_server_takes_from_a_plain_role():
    from chat.management.commands.serve import connection_slots

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        most = int(cursor.fetchone()[0])
    assert 0 < connection_slots() < most  # superusers' reserved slots are not ours


def test_pools_that_would_pass_max_connections_are_shared_out():
    from chat.management.commands.serve import CONNECTION_HEADROOM, children_env

    environ = {"PATH": "/bin"}
    # Two processes of 34 fit in 97 slots: the environment is left as it is.
    assert children_env(environ, 2, 34, 97) == (environ, "")
    # Four do not: each pools at most its share, and together they leave the headroom.
    env, notice = children_env(environ, 4, 34, 97)
    assert env == {"PATH": "/bin", "TENEX_DB_POOL_MAX": "23"} and 4 * 23 <= 97 - CONNECTION_HEADROOM
    assert "4 processes x 34 pooled connections exceed the 97" in notice
    # An operator's own size is kept, with a warning; unpooled processes are left alone.
    mine = {"TENEX_DB_POOL_MAX": "34"}
    env, notice = children_env(mine, 4, 34, 97)
    assert env == mine and notice.startswith("warning: ")
    assert children_env(environ, 64, None, 97) == (environ, "")
    assert children_env(environ, 200, 34, 97)[0]["TENEX_DB_POOL_MAX"] == "1"  # never below one
