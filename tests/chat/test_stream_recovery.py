"""Streams that outlive their log or their producer, idle pings, and history trimming."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.providers.base import Turn
from agents.runtime import trim_history
from chat.models import Message, Thread
from chat.prompt import generation_input
from chat.stream import records
from chat.stream.leases import leases_key
from chat.stream.log import RedisStreamLog, get_stream_log
from chat.stream.runtime import get_runtime
from tests.helpers import joined_deltas, parse_sse, streamed_body
from workspaces.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = "/api/v1/chat/threads"


@pytest.fixture(autouse=True)
def fast_tokens(settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 0


@pytest.fixture
def thread(alice):
    return alice.client.post(THREADS, {"title": "Recovery"}, format="json").json()


def orphan(workspace, thread_id: str, *, lease_in: float, content: str = "") -> Message:
    """A reply left streaming by a producer that no longer exists."""
    with tenant_context(workspace.pk):
        position = Message.objects.filter(thread_id=thread_id).count() + 1
        return Message.objects.create(
            workspace_id=workspace.pk, thread_id=thread_id, position=position, role="assistant",
            status="streaming", content=content, lease_expires_at=timezone.now() + timedelta(seconds=lease_in),
        )


def test_expired_log_replays_from_the_stored_message(alice, thread):
    sent = alice.client.post(f"{THREADS}/{thread['id']}/messages", {"content": "Hello there"}, format="json",
                             HTTP_ACCEPT="text/event-stream")
    original = parse_sse(streamed_body(sent))
    reply_id = original[-1]["data"]["message_id"]
    # The log expired: gone from Redis, and long gone from this process's short-lived mirror.
    redis.Redis.from_url(settings.REDIS_URL).delete(RedisStreamLog.key(reply_id))
    get_stream_log().mirror.drop(reply_id)
    url = f"{THREADS}/{thread['id']}/messages/{reply_id}/stream"
    replayed = parse_sse(streamed_body(alice.client.get(url)))
    assert [e["event"] for e in replayed] == ["delta", "done"]
    assert replayed[0]["data"]["delta"] == original[-1]["data"]["message"]["content"]
    assert replayed[-1]["data"]["message"] == original[-1]["data"]["message"]
    assert alice.client.get(url, HTTP_LAST_EVENT_ID=str(original[-1]["id"])).status_code == 204


def finished_reply(alice, thread) -> tuple[str, list[dict]]:
    """A reply streamed to its end, its events now only in Redis (the local mirror forgot them)."""
    sent = alice.client.post(f"{THREADS}/{thread['id']}/messages", {"content": "Tell me about pricing"},
                             format="json", HTTP_ACCEPT="text/event-stream")
    original = parse_sse(streamed_body(sent))
    reply_id = original[-1]["data"]["message_id"]
    get_stream_log().mirror.drop(reply_id)
    return reply_id, original


def forget_events(reply_id: str, seqs) -> None:
    """Lose entries of a reply's log, as a Redis that restarted or failed over without them would."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert client.xdel(RedisStreamLog.key(reply_id), *[f"{seq}-0" for seq in seqs]) == len(seqs)
    client.close()


def test_a_log_that_lost_its_tail_is_finished_from_the_stored_message(alice, thread):
    reply_id, original = finished_reply(alice, thread)
    content = original[-1]["data"]["message"]["content"]
    assert len(original) > 12
    kept = 10  # the log kept events 1..10: the later deltas and the ending never made it
    forget_events(reply_id, range(kept + 1, len(original) + 1))
    url = f"{THREADS}/{thread['id']}/messages/{reply_id}/stream"
    for after in (0, 4, kept):
        resumed = parse_sse(streamed_body(alice.client.get(url, HTTP_LAST_EVENT_ID=str(after))))
        events = original[:after] + resumed
        assert [e["id"] for e in events[: kept + 1]] == list(range(1, kept + 2)), after
        assert events[kept]["event"] == "delta"  # the text the log lost, in one delta
        assert events[-1]["event"] == "done" and events[-1]["data"]["message"] == original[-1]["data"]["message"]
        assert joined_deltas(events) == content, after


def test_a_gap_in_the_log_is_never_streamed_over(alice, thread):
    reply_id, original = finished_reply(alice, thread)
    content = original[-1]["data"]["message"]["content"]
    assert [e["event"] for e in original[:5]] == ["tool_call", "tool_call", "delta", "delta", "delta"]
    forget_events(reply_id, [4, 5])  # two deltas lost in the middle of the log
    url = f"{THREADS}/{thread['id']}/messages/{reply_id}/stream"
    for after in (0, 2, 3):
        resumed = parse_sse(streamed_body(alice.client.get(url, HTTP_LAST_EVENT_ID=str(after))))
        events = original[:after] + resumed
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids)) and ids[: after + 1] == list(range(1, after + 2)), ids
        assert events[-1]["event"] == "done"
        assert joined_deltas(events) == content, after
    # After the gap the log is whole again: a reader resuming there reads it as it is.
    resumed = parse_sse(streamed_body(alice.client.get(url, HTTP_LAST_EVENT_ID="5")))
    assert resumed == original[5:]


def test_idle_stream_sends_pings_until_the_lease_lapses(alice, thread, workspace, settings):
    settings.TENEX_STREAM_PING_SECONDS = 1
    settings.TENEX_STREAM_LEASE_SECONDS = 2
    stuck = orphan(workspace, thread["id"], lease_in=2.5, content="Partial answer")
    started = time.monotonic()
    response = alice.client.get(f"{THREADS}/{thread['id']}/messages/{stuck.pk}/stream")
    arrivals: list[tuple[float, bytes]] = []  # when each chunk came: what a slow ending waited on

    async def collect() -> bytes:
        async for chunk in response.streaming_content:
            arrivals.append((round(time.monotonic() - started, 2), chunk))
        return b"".join(chunk for _at, chunk in arrivals)

    body = async_to_sync(collect)()
    assert time.monotonic() - started < 10, [(at, chunk[:60]) for at, chunk in arrivals]
    assert body.count(b": ping\n\n") >= 1
    events = parse_sse(body)
    assert events[-1]["event"] == "error" and events[-1]["data"]["error"]["code"] == "interrupted"
    assert joined_deltas(events) == events[-1]["data"]["message"]["content"] == "Partial answer"


def test_sweep_ends_replies_whose_producer_died(alice, thread, workspace):
    stuck = orphan(workspace, thread["id"], lease_in=-1, content="Half")
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.zadd(leases_key(), {f"{workspace.pk}|{stuck.pk}": time.time() - 1})
    runtime = get_runtime()
    assert runtime.submit(runtime.leases.sweep()).result(timeout=10) >= 1
    with tenant_context(workspace.pk):
        stuck.refresh_from_db()
    assert stuck.status == "interrupted" and stuck.content == "Half"
    assert stuck.error["code"] == "interrupted" and stuck.completed_at is not None
    assert client.zscore(leases_key(), f"{workspace.pk}|{stuck.pk}") is None
    history = alice.client.get(f"{THREADS}/{thread['id']}/messages").json()["results"]
    assert history[-1]["status"] == "interrupted"


def test_a_live_lease_is_not_swept(alice, thread, workspace):
    alive = orphan(workspace, thread["id"], lease_in=30)
    redis.Redis.from_url(settings.REDIS_URL).zadd(leases_key(), {f"{workspace.pk}|{alive.pk}": time.time() + 30})
    runtime = get_runtime()
    runtime.submit(runtime.leases.sweep()).result(timeout=10)
    with tenant_context(workspace.pk):
        alive.refresh_from_db()
    assert alive.status == "streaming"


def test_a_sweep_leaves_the_leases_of_other_runs_on_the_same_redis_alone(settings):
    """Another deployment (or test run, on a database of its own) sharing this Redis keeps its
    leases under its own TENEX_REDIS_PREFIX: a lapsed one there is not this run's to drop, while
    this run's lapsed entry of a reply it does not know is dropped as before."""
    this_run, other_run = settings.TENEX_REDIS_PREFIX, f"{settings.TENEX_REDIS_PREFIX}-other"
    runtime = get_runtime()
    client = redis.Redis.from_url(settings.REDIS_URL)
    settings.TENEX_STREAM_LEASE_SECONDS = -60  # every lease below has lapsed as it is written
    settings.TENEX_REDIS_PREFIX = other_run
    other_key = leases_key()
    try:
        runtime.leases.track_new("ws_of_the_other_run", "msg_of_the_other_run")
        settings.TENEX_REDIS_PREFIX = this_run
        runtime.leases.track_new("ws_gone", "msg_gone")
        runtime.submit(runtime.leases.sweep()).result(timeout=10)
        assert client.zscore(other_key, "ws_of_the_other_run|msg_of_the_other_run") is not None
        assert client.zscore(leases_key(), "ws_gone|msg_gone") is None
    finally:
        client.zrem(other_key, "ws_of_the_other_run|msg_of_the_other_run")


def test_history_is_trimmed_oldest_first_within_the_budget():
    turns = [Turn(role="user" if i % 2 == 0 else "assistant", content=f"turn {i} " + "x" * 400) for i in range(10)]
    kept = trim_history(turns, budget_tokens=350)
    assert kept[-1] is turns[-1]
    assert kept == turns[-len(kept):]
    assert kept[0].role == "user"
    assert sum(len(t.content) for t in kept) // 4 <= 350
    assert trim_history(turns[-1:], budget_tokens=1) == turns[-1:]  # the newest turn always stays


def test_reply_sees_earlier_turns_of_the_thread(alice, thread):
    first = alice.client.post(f"{THREADS}/{thread['id']}/messages", {"content": "First question"}, format="json",
                              HTTP_ACCEPT="text/event-stream")
    streamed_body(first)
    second = alice.client.post(f"{THREADS}/{thread['id']}/messages", {"content": "Second question"}, format="json",
                               HTTP_ACCEPT="text/event-stream")
    events = parse_sse(streamed_body(second))
    assert events[-1]["event"] == "done"
    query = next(e["data"]["tool_call"]["arguments"]["query"] for e in events if e["event"] == "tool_call")
    assert query == "Second question"
    assert alice.client.get(f"{THREADS}/{thread['id']}").json()["message_count"] == 4


def load_history_of_turns(workspace, thread_id: str, turns: int, padding: int):
    """Reply to a thread of `turns` alternating turns ("turn N " and `padding` x's each); the
    history the reply would get, the full list of turns, and the queries that loaded it."""

    def text(position: int) -> str:
        return f"turn {position} " + "x" * padding

    def role(position: int) -> str:
        return "user" if position % 2 else "assistant"

    with tenant_context(workspace.pk):
        Message.objects.bulk_create(
            Message(
                workspace_id=workspace.pk, thread_id=thread_id, position=position, role=role(position),
                content=text(position), status="complete",
            )
            for position in range(1, turns + 1)
        )
        reply = Message.objects.create(
            workspace_id=workspace.pk, thread_id=thread_id, position=turns + 1, role="assistant", status="streaming",
        )
        target = Thread.objects.get(pk=thread_id)
        with CaptureQueriesContext(connection) as queries:
            loaded = generation_input(workspace.pk, target, reply.position, reply.created_at)
    full = [Turn(role=role(p), content=text(p)) for p in range(1, turns + 1)]
    return loaded.request.history, full, queries.captured_queries


def test_a_long_thread_loads_only_the_history_the_budget_can_keep(alice, thread, workspace, settings):
    settings.TENEX_HISTORY_TOKEN_BUDGET = 1000
    # 300 turns of ~100 tokens: 30x the budget.
    history, full, queries = load_history_of_turns(workspace, thread["id"], 300, 400)
    # One query: the newest 16 rows hold what the budget keeps; no attachments, so none looked up.
    assert len(queries) == 1 and "FROM chat_message m" in queries[0]["sql"], queries
    assert trim_history(list(history), 1000) == trim_history(full, 1000)
    assert 10 <= len(history) <= 12  # what the budget keeps, and at most a turn or two more
    assert history[-1].content.startswith("turn 300 ")


def test_history_pages_grow_until_the_budget_is_spent(alice, thread, workspace, settings):
    settings.TENEX_HISTORY_TOKEN_BUDGET = 1000
    # 400 turns of ~10 tokens: the budget keeps ~100, read in pages of 16, 32 and 64.
    history, full, queries = load_history_of_turns(workspace, thread["id"], 400, 30)
    assert trim_history(list(history), 1000) == trim_history(full, 1000)
    assert 100 <= len(history) <= 112
    assert len(queries) == 3, queries


def test_partial_content_is_checkpointed_while_the_reply_streams(alice, thread, workspace, settings):
    settings.TENEX_LOCAL_TOKEN_DELAY_MS = 100
    sent = alice.client.post(f"{THREADS}/{thread['id']}/messages", {"content": "Tell me about pricing"}, format="json")
    reply_id = sent.json()["assistant_message"]["id"]
    time.sleep(2.5)
    with tenant_context(workspace.pk):
        row = Message.objects.get(pk=reply_id)
    assert row.status == "streaming"
    assert row.content and row.last_seq > 0
    assert row.lease_expires_at > timezone.now()
    url = f"{THREADS}/{thread['id']}/messages/{reply_id}"
    events = parse_sse(streamed_body(alice.client.get(f"{url}/stream")))
    final = events[-1]["data"]["message"]["content"]
    assert final.startswith(row.content) and len(final) > len(row.content)


def test_one_checkpoint_saves_every_workspace_and_skips_replies_it_no_longer_owns(
    alice, outsider, workspace, other_workspace
):
    ours = alice.client.post(THREADS, {}, format="json").json()["id"]
    theirs = outsider.client.post(THREADS, {}, format="json").json()["id"]
    mine_a, mine_b, taken = (orphan(workspace, ours, lease_in=5), orphan(other_workspace, theirs, lease_in=5),
                             orphan(workspace, ours, lease_in=5))
    for workspace_id, message in ((workspace.pk, mine_a), (other_workspace.pk, mine_b), (workspace.pk, taken)):
        with tenant_context(workspace_id):
            Message.objects.filter(pk=message.pk).update(producer="me" if message is not taken else "someone-else")
    state = records.GenerationState(seq=3, content="partial ", tool_calls=[{"id": "call_1", "status": "running"}])
    owned = records.checkpoint_many(
        "me",
        [(workspace.pk, mine_a.pk, state), (other_workspace.pk, mine_b.pk, state), (workspace.pk, taken.pk, state)],
    )
    assert owned == {mine_a.pk, mine_b.pk}
    for workspace_id, message in ((workspace.pk, mine_a), (other_workspace.pk, mine_b)):
        with tenant_context(workspace_id):
            row = Message.objects.get(pk=message.pk)
        assert (row.content, row.last_seq, row.tool_calls) == ("partial ", 3, state.tool_calls)
        assert row.lease_expires_at > message.lease_expires_at
    with tenant_context(workspace.pk):
        assert Message.objects.get(pk=taken.pk).content == ""
