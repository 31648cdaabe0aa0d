"""Streams through real outages: a private Redis stopped and restarted empty, and PostgreSQL cut
behind a TCP proxy, with two daphne processes serving the same replies."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import httpx
import pytest
from django.db import connection

from tests.chat.test_daphne_streams import headers, start_reply, stream_url
from tests.helpers import free_port, joined_deltas, parse_sse
from tests.processes import PostgresProxy, daphne_process, start_redis, stop_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
THREADS = "/api/v1/chat/threads"
PING_SECONDS = 5
CONTRACT_PING_SECONDS = 15  # API.md: a `: ping` at least every 15 s while idle
LONG_QUESTION = "Tell me everything about our pricing"


class Reader(threading.Thread):
    """An SSE client on its own thread: the events it got, and when each chunk (event or ping) came."""

    def __init__(self, url: str, key: str, after: int = 0):
        super().__init__(daemon=True)
        self.url, self.key, self.after = url, key, after
        self.events: list[dict] = []
        self.pings = 0
        self.arrivals: list[float] = []
        self.error: Exception | None = None
        self.status: int | None = None
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            with httpx.stream(
                "GET", self.url, headers=headers(self.key, **{"Last-Event-ID": str(self.after)}),
                timeout=httpx.Timeout(10, read=120),
            ) as response:
                self.status = response.status_code
                buffer = ""
                for chunk in response.iter_text():
                    self.arrivals.append(time.monotonic())
                    buffer += chunk
                    while "\n\n" in buffer:
                        block, buffer = buffer.split("\n\n", 1)
                        if block.startswith(": ping"):
                            self.pings += 1
                        self.events.extend(parse_sse(block + "\n\n"))
        except Exception as exc:  # noqa: BLE001 - reported by the test's assertions
            self.error = exc
        self.ended_at = time.monotonic()

    def wait_for_events(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert self.is_alive() and time.monotonic() < deadline, (self.error, self.events[-1:])
            time.sleep(0.02)

    def longest_silence(self) -> float:
        moments = [self.started_at, *self.arrivals, self.ended_at]
        return max(later - earlier for earlier, later in zip(moments, moments[1:], strict=False))

    def outcome(self) -> str:
        return f"{self.url} status={self.status} error={self.error!r} last={self.events[-1:]}"


def stored_message(base: str, key: str, thread_id: str, message_id: str) -> dict:
    response = httpx.get(f"{base}{THREADS}/{thread_id}/messages?limit=100", headers=headers(key), timeout=10)
    assert response.status_code == 200, response.text
    return next(m for m in response.json()["results"] if m["id"] == message_id)


def assert_whole_stream(reader: Reader, stored: dict) -> None:
    """The reader ended (`done` or `error`), its ids rose (the ending rebuilt from the stored message
    keeps the number the reply gave it) and its deltas join to the stored text."""
    assert reader.error is None and reader.status == 200, reader.outcome()
    events = reader.events
    assert events and events[-1]["event"] in ("done", "error"), reader.outcome()
    ids = [e["id"] for e in events]
    assert ids[0] == reader.after + 1 and ids == sorted(set(ids)), ids
    assert events[-1]["data"]["message"]["status"] == stored["status"]
    assert joined_deltas(events) == stored["content"], reader.outcome()


@pytest.fixture
def thread_id(alice):
    return alice.client.post(THREADS, {"title": "outages"}, format="json").json()["id"]


def cancel(base: str, key: str, thread_id: str, message_id: str) -> dict:
    response = httpx.post(f"{base}{THREADS}/{thread_id}/messages/{message_id}/cancel", headers=headers(key), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_readers_on_both_processes_ride_out_redis_outages(alice, thread_id, tmp_path):
    """Redis stops for 5, 15 and 40 s and comes back empty each time, with readers on both processes:
    of a reply that was writing (it cannot go on, and ends at once with what it had), of a reply
    whose producer had nothing to write during the outage (it goes on once Redis is back, and is
    cancelled then), and of a finished reply, starting while Redis is down. Each reader gets a ping
    at least every 15 s, an ending as soon as either store knows it, and every word stored."""
    port = free_port()
    redis_process = start_redis(port, str(tmp_path))
    env = dict(REDIS_URL=f"redis://127.0.0.1:{port}/0", TENEX_STREAM_PING_SECONDS=str(PING_SECONDS))
    try:
        with (
            daphne_process(TENEX_LOCAL_TOKEN_DELAY_MS="100", **env) as (a, _),
            daphne_process(TENEX_LOCAL_TOKEN_DELAY_MS="120000", **env) as (b, _),  # a word every 2 minutes
        ):
            finished_id = start_reply(a, alice.key, thread_id, "Hello")
            before = Reader(stream_url(a, thread_id, finished_id), alice.key)
            before.run()
            assert before.events[-1]["event"] == "done", before.outcome()
            finished = stored_message(a, alice.key, thread_id, finished_id)
            for outage_seconds in (5, 15, 40):
                writing_id = start_reply(a, alice.key, thread_id, LONG_QUESTION)
                idle_id = start_reply(b, alice.key, thread_id, LONG_QUESTION)
                writing = [Reader(stream_url(base, thread_id, writing_id), alice.key) for base in (a, b)]
                idle = [Reader(stream_url(base, thread_id, idle_id), alice.key) for base in (a, b)]
                for reader in writing + idle:
                    reader.start()
                for reader in writing:
                    reader.wait_for_events(4)
                for reader in idle:
                    reader.wait_for_events(3)  # the tool call, its result, the first word
                stop_redis(redis_process)
                late = Reader(stream_url(b, thread_id, finished_id), alice.key)
                late.start()
                time.sleep(outage_seconds)
                for reader in [*writing, late]:  # all told by the stored messages, during the outage
                    assert not reader.is_alive(), (outage_seconds, reader.outcome())
                assert all(reader.is_alive() for reader in idle), [reader.outcome() for reader in idle]
                redis_process = start_redis(port, str(tmp_path))
                cancelled = cancel(a, alice.key, thread_id, idle_id)
                for reader in idle:
                    reader.join(30)
                    assert not reader.is_alive(), reader.outcome()
                stored = stored_message(a, alice.key, thread_id, writing_id)
                # The writing reply could not be written on while Redis was down: it ended with what it had.
                assert stored["status"] == "failed" and stored["error"]["code"] == "stream_unavailable", stored
                assert cancelled["status"] == "cancelled"
                for reader in writing:
                    assert_whole_stream(reader, stored)
                for reader in idle:
                    assert_whole_stream(reader, cancelled)
                    assert reader.events[-1]["event"] == "done"
                    assert reader.pings >= outage_seconds // CONTRACT_PING_SECONDS, reader.outcome()
                assert_whole_stream(late, finished)
                for reader in [*writing, *idle, late]:
                    assert reader.longest_silence() <= CONTRACT_PING_SECONDS, (outage_seconds, reader.outcome())
    finally:
        stop_redis(redis_process)
    assert finished["content"] == joined_deltas(before.events)


def test_the_first_reply_after_a_redis_restart_completes_on_every_process(alice, thread_id, tmp_path):
    """Redis restarts empty while nothing is streaming: each process's pooled connections and loaded
    append script are gone. The next reply on each process still streams to its end. What failed
    meanwhile (sweeps, lease renewals, the cancel listener) is logged in one line each: a traceback
    formatted for an outage would keep the source of every module in it in memory for good."""
    port = free_port()
    redis_process = start_redis(port, str(tmp_path))
    env = dict(REDIS_URL=f"redis://127.0.0.1:{port}/0", TENEX_LOCAL_TOKEN_DELAY_MS="10")
    try:
        with daphne_process(**env) as (a, process_a), daphne_process(**env) as (b, process_b):
            for base in (a, b):  # every process has connections and the script loaded
                first = Reader(stream_url(base, thread_id, start_reply(base, alice.key, thread_id, "Hi")), alice.key)
                first.run()
                assert first.events[-1]["event"] == "done", first.outcome()
            stop_redis(redis_process)
            time.sleep(1)
            redis_process = start_redis(port, str(tmp_path))
            for base in (a, b):
                with httpx.stream(
                    "POST", f"{base}{THREADS}/{thread_id}/messages", json={"content": "And now?"},
                    headers=headers(alice.key, Accept="text/event-stream"), timeout=30,
                ) as response:
                    assert response.status_code == 200, response.read()
                    events = parse_sse(response.read())
                assert events[-1]["event"] == "done", events[-1:]
                message = events[-1]["data"]["message"]
                assert message["status"] == "complete" and joined_deltas(events) == message["content"]
            for process in (process_a, process_b):
                logged = process.log_path.read_text()
                assert "Redis" in logged and "Traceback" not in logged, logged[-3000:]
    finally:
        stop_redis(redis_process)




@contextmanager
def database_proxy():
    db = connection.settings_dict
    with PostgresProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)), free_port()) as proxy:
        yield proxy


def timed_get(url: str, key: str) -> tuple[int, float, httpx.Response]:
    started = time.monotonic()
    response = httpx.get(url, headers=headers(key), timeout=30)
    return response.status_code, time.monotonic() - started, response


def test_requests_during_a_database_cut_answer_503_at_once_and_recover(alice, thread_id):
    """PostgreSQL cut under a warm pool (idle connections that are now dead): the first request, which
    is how the process learns, answers 503 within moments, not after the pool's timeout; every
    request after it is a 503 with `Retry-After` at once; it serves again within moments of
    PostgreSQL coming back, the dead connections gone rather than each failing a request."""
    url_path = f"{THREADS}/{thread_id}/messages"
    with (
        database_proxy() as proxy,
        daphne_process(
            database_port=proxy.port, TENEX_DB_POOL="true", TENEX_DB_POOL_MIN="3", TENEX_DB_POOL_MAX="6",
        ) as (base, _),
    ):
        assert timed_get(f"{base}{url_path}", alice.key)[0] == 200
        proxy.cut()
        status, first_took, _ = timed_get(f"{base}{url_path}", alice.key)  # how the process learns
        assert status == 503
        timings = []
        for path in (url_path, THREADS, "/api/v1/workspace", f"{url_path}/nothing/stream") * 3:
            status, took, response = timed_get(f"{base}{path}", alice.key)
            assert status == 503 and response.headers["Retry-After"] == "2", (path, status, response.text[:300])
            assert response.json()["error"]["code"] == "unavailable"
            timings.append(took)
        sent = httpx.post(f"{base}{url_path}", json={"content": "Hello"}, headers=headers(alice.key), timeout=30)
        assert sent.status_code == 503
        time.sleep(10)  # an outage long enough for the pool's reconnection backoff to grow past seconds
        proxy.restore()
        restored = time.monotonic()
        while (status := timed_get(f"{base}{url_path}", alice.key)[0]) != 200:
            assert status == 503 and time.monotonic() - restored < 10, status
            time.sleep(0.05)
        back_after = time.monotonic() - restored
        statuses = [timed_get(f"{base}{path}", alice.key)[0] for path in (url_path, THREADS) * 3]
    print(f"first 503 after {first_took:.2f} s; then {max(timings):.3f} s at most; back {back_after:.2f} s after")
    assert max(timings) <= 1.0, timings
    # Generous bounds, for a loaded machine: the pool's timeout is 10 s, its reconnection backoff
    # doubles from 1 s; the breaker's probe and its wait slices are a quarter of a second.
    assert first_took <= 2.0 and back_after <= 2.0, (first_took, back_after)
    assert statuses == [200] * 6, statuses


def cut_mid_reply(
    alice, thread_id: str, cut_seconds: float, readers_end_first: bool = False, **env: str
) -> tuple[dict, list[Reader]]:
    """A reply produced by a process whose PostgreSQL is cut for `cut_seconds` mid-reply (and, with
    `readers_end_first`, until its readers have ended), read on that process and on another that
    still reaches PostgreSQL (and sweeps). The stored reply and the readers."""
    with (
        database_proxy() as proxy,
        daphne_process(
            database_port=proxy.port, TENEX_DB_POOL="true", TENEX_DB_POOL_MAX="6", TENEX_LOCAL_TOKEN_DELAY_MS="100",
            TENEX_STREAM_PING_SECONDS=str(PING_SECONDS), **env,
        ) as (producer, _),
        daphne_process(TENEX_STREAM_PING_SECONDS=str(PING_SECONDS)) as (other, _),
    ):
        reply_id = start_reply(producer, alice.key, thread_id, LONG_QUESTION)
        readers = [Reader(stream_url(base, thread_id, reply_id), alice.key) for base in (producer, other)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.wait_for_events(4)
        proxy.cut()
        time.sleep(cut_seconds)
        if readers_end_first:
            for reader in readers:
                reader.join(60)
                assert not reader.is_alive(), reader.outcome()  # told by the log, PostgreSQL still cut
        proxy.restore()
        for reader in readers:
            reader.join(60)
            assert not reader.is_alive(), reader.outcome()
        deadline = time.monotonic() + 30
        while (stored := stored_message(other, alice.key, thread_id, reply_id))["status"] == "streaming":
            assert time.monotonic() < deadline, stored
            time.sleep(0.2)
    return stored, readers


def test_a_reply_finishes_complete_through_a_15_second_database_cut(alice, thread_id):
    stored, readers = cut_mid_reply(alice, thread_id, 15)
    assert stored["status"] == "complete" and stored["error"] is None, stored
    for reader in readers:
        assert_whole_stream(reader, stored)
        assert reader.events[-1]["event"] == "done"
        assert reader.longest_silence() <= CONTRACT_PING_SECONDS, reader.outcome()
    assert len(stored["content"]) > len(joined_deltas(readers[0].events[:4]))


def test_a_reply_outlasting_the_database_bound_fails_with_every_word(alice, thread_id):
    stored, readers = cut_mid_reply(alice, thread_id, 5, readers_end_first=True, TENEX_STREAM_DB_OUTAGE_SECONDS="3")
    assert stored["status"] == "failed" and stored["error"]["code"] == "database_unavailable", stored
    for reader in readers:
        assert_whole_stream(reader, stored)
        assert reader.events[-1]["event"] == "error"
        assert reader.events[-1]["data"]["error"]["code"] == "database_unavailable"
        assert reader.longest_silence() <= CONTRACT_PING_SECONDS, reader.outcome()
