"""The durable floor for bench/stream.py: a bare ASGI app doing, per reply, exactly the contract's
durable work and nothing else, on psycopg's async pool and redis.asyncio (no framework).

Serve it with the same daphne as tenex (`python -m daphne ... bench.durable_floor_app:application`),
connected as the same role (`DATABASE_URL`, `tenex_app`: row-level security applies) to the same
database and tables, and to Redis (`REDIS_URL`). `POST /api/v1/chat/threads/<id>/messages` with
`{"content": ...}` and a tenex API key answers a reply as Server-Sent Events:

1. The key looked up by its hash (one autocommit query, on the connection the send's transaction
   then uses; no cache).
2. One transaction, pipelined: the workspace's row-level security setting
   (`set_config('tenex.workspace_id', ..., true)`), the thread's row locked, its recent history read
   (newest first, up to the history budget), both messages in one INSERT (the reply `streaming`,
   leased to this process), the thread's count and activity. The response head follows the commit.
3. `tool_call` (running); one transaction for the tool's ranked full-text search over the
   workspace's passages (`websearch_to_tsquery`/`ts_rank` as knowledge/search.py runs them on
   PostgreSQL, passages holding every term first); `tool_call` (complete).
4. The reply quoted from what the search found, one `delta` per word, as tenex's local provider
   composes it: BENCH_FLOOR_DELAY_MS between words (0: in bursts of 64 words per loop turn, as the
   provider's burst mode does).
5. A final transaction (content, tool calls, status, usage, completion time, last seq, lease
   cleared; the thread's activity), then `done` carrying the message object.

Every event is appended to the reply's Redis stream (`tenex:stream:{msg_...}`, one entry per
event, seq as the entry id, MAXLEN and TTL as tenex sets them) before it is written as SSE. Work is
batched across replies as a careful engineer would: one appender sends the events of every reply
produced since its last round in one pipeline (one script call per reply, appending its events;
one round in flight at a time), and one checkpointer saves the partial content of every live reply
once a second in one UPDATE per workspace, renewing their leases. Headers come from the capture
file (BENCH_SSE_CAPTURE) so the bytes per reply equal tenex's; bench/stream.py checks the event
count and sizes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from bench.asgi_floor import Receive, Send, answer, capture_headers, lifespan, load_capture, new_id, read_body

PATH = re.compile(r"^/api/v1/chat/threads/(thr_[0-9A-Za-z]{1,28})/messages/?$")
WORDS = re.compile(r"\S+\s*|\s+")
TERMS = re.compile(r"\w+")
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
RETRY_HINT = b"retry: 2000\n\n"
BURST_WORDS = 64
CHECKPOINT_SECONDS = 1.0
LEASE_SECONDS = 10
STREAM_MAXLEN = 100_000
STREAM_TTL = 2 * 24 * 3600
HISTORY_ROWS = 16
HISTORY_TOKEN_BUDGET = 6000
CHARS_PER_TOKEN = 4
SEARCH_LIMIT = 5
MAX_HITS = 1000
MAX_QUOTES = 3
logger = logging.getLogger(__name__)
PRODUCER = f"floor-{os.getpid()}-{secrets.token_hex(4)}"
# One reply's events of one round: an entry each (seq as the entry id), then the key's TTL.
# KEYS[1] the stream; ARGV: maxlen, ttl, first seq, then one JSON text per event.
APPEND_SCRIPT = """
local first = tonumber(ARGV[3])
for i = 4, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], (first + i - 4) .. '-0', 'e', ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


HEADERS = capture_headers(load_capture())
DELAY = int(os.environ.get("BENCH_FLOOR_DELAY_MS", "0")) / 1000


def timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def sse(seq: int, kind: str, text: str) -> bytes:
    return f"id: {seq}\nevent: {kind}\ndata: {text}\n\n".encode()


# --- SQL -------------------------------------------------------------------------------------------
KEY_SQL = (
    "SELECT workspace_id, user_id FROM workspaces_apikey WHERE prefix = %s AND secret_hash = %s "
    "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
)
RLS_SQL = "SELECT set_config('tenex.workspace_id', %s, true)"
LOCK_SQL = "SELECT message_count, title_is_auto, title, system_prompt FROM chat_thread WHERE id = %s FOR UPDATE"
HISTORY_SQL = (
    "SELECT m.role, m.content FROM chat_message m WHERE m.thread_id = %s "
    "ORDER BY m.position DESC LIMIT %s"
)
INSERT_SQL = (
    "INSERT INTO chat_message (id, workspace_id, thread_id, position, role, content, status, tool_calls, usage, "
    "error, created_at, completed_at, last_seq, lease_expires_at, producer) VALUES "
    "(%s, %s, %s, %s, 'user', %s, 'complete', '[]', '{}', NULL, %s, %s, 0, NULL, ''), "
    "(%s, %s, %s, %s, 'assistant', '', 'streaming', '[]', '{}', NULL, %s, NULL, 0, "
    f"%s + interval '{LEASE_SECONDS} seconds', %s)"
)
APPENDED_SQL = (
    "UPDATE chat_thread SET message_count = message_count + 2, last_message_at = %s, activity_at = %s, "
    "updated_at = %s, title = CASE WHEN title_is_auto AND title = '' THEN %s ELSE title END WHERE id = %s"
)
# knowledge/search.py on PostgreSQL: match any term, passages holding every term first, then by rank;
# the passage's text, title and source read in the same statement.
SEARCH_SQL = (
    "SELECT p.document_id, d.title, p.text, ts_rank(p.search_vector, websearch_to_tsquery('english', %s)) AS rank, "
    "p.search_vector @@ websearch_to_tsquery('english', %s) AS complete, d.source_url "
    "FROM knowledge_passage p JOIN knowledge_document d ON d.id = p.document_id "
    "WHERE p.search_vector @@ websearch_to_tsquery('english', %s) "
    "ORDER BY complete DESC, rank DESC, p.id LIMIT %s"
)
CHECKPOINT_SQL = (
    "UPDATE chat_message m SET content = v.content, tool_calls = v.tool_calls::jsonb, last_seq = v.seq, "
    f"lease_expires_at = now() + interval '{LEASE_SECONDS} seconds' "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) AS v(id, content, tool_calls, seq) "
    "WHERE m.id = v.id AND m.status = 'streaming' AND m.producer = %s"
)
FINAL_SQL = (
    "UPDATE chat_message SET content = %s, tool_calls = %s::jsonb, usage = %s::jsonb, status = 'complete', "
    "error = NULL, completed_at = %s, last_seq = %s, lease_expires_at = NULL "
    "WHERE id = %s AND status = 'streaming' AND producer = %s"
)
ACTIVITY_SQL = "UPDATE chat_thread SET last_message_at = %s, activity_at = %s, updated_at = %s WHERE id = %s"


class Reply:
    """One reply's state: what the checkpointer saves and the appender's queue for it."""

    __slots__ = ("content", "delivered", "id", "pending", "saved_seq", "send", "seq", "thread_id", "tool_calls",
                 "workspace_id")

    def __init__(self, message_id: str, thread_id: str, workspace_id: str, send: Send):
        self.id, self.thread_id, self.workspace_id, self.send = message_id, thread_id, workspace_id, send
        self.seq = 0
        self.saved_seq = 0
        self.content: list[str] = []
        self.tool_calls: list[dict] = []
        self.pending: list[tuple[int, str, str]] = []  # (seq, type, JSON text) not yet appended
        self.delivered: asyncio.Future | None = None  # set once the terminal event is written

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        self.seq += 1
        if kind == "delta":
            text = (f'{{"seq": {self.seq}, "type": "delta", "message_id": "{self.id}", '
                    f'"thread_id": "{self.thread_id}", "delta": {ENCODER.encode(fields["delta"])}, "tool_call": null}}')
        else:
            text = ENCODER.encode({"seq": self.seq, "type": kind, "message_id": self.id, "thread_id": self.thread_id,
                                   "delta": None, "tool_call": None, **fields})
        self.pending.append((self.seq, kind, text))


class Floor:
    """The process's pool, Redis client, appender and checkpointer (started on first use)."""

    def __init__(self) -> None:
        self.pool = None
        self.redis = None
        self.live: dict[str, Reply] = {}
        self.waiting: dict[str, Reply] = {}  # replies with events to append
        self.wake = asyncio.Event()
        self._started: asyncio.Future | None = None

    async def start(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            import redis.asyncio as aioredis
            from psycopg_pool import AsyncConnectionPool

            self.pool = AsyncConnectionPool(
                os.environ["DATABASE_URL"], min_size=8, max_size=48, kwargs={"autocommit": True}, open=False,
            )
            await self.pool.open(wait=True)
            self.redis = aioredis.Redis.from_url(os.environ["REDIS_URL"], max_connections=64)
            self.append_sha = await self.redis.script_load(APPEND_SCRIPT)
            self._tasks = [asyncio.create_task(self._append_forever()), asyncio.create_task(self._checkpoint_forever())]
            self._started.set_result(True)
        await self._started

    def publish(self, reply: Reply) -> None:
        self.waiting[reply.id] = reply
        self.wake.set()

    async def _append_forever(self) -> None:
        """Each round: every waiting reply's events in one pipeline, then written as SSE, in order.
        A reply whose append or write failed fails alone; the appender goes on."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.waiting = list(self.waiting.values()), {}
            taken = []
            for reply in batch:
                events, reply.pending = reply.pending, []
                taken.append((reply, events))
            try:
                failed = await self._append(taken)
                if failed:  # the script was flushed from Redis (another user of the server): load it, retry once
                    self.append_sha = await self.redis.script_load(APPEND_SCRIPT)
                    failed = await self._append([(reply, events) for reply, events in taken if reply in failed])
            except Exception as exc:  # noqa: BLE001 - Redis unreachable: this round's replies fail
                failed = {reply: exc for reply, _events in taken}
            for reply, events in taken:
                error = failed.get(reply)
                if error is None:
                    body = b"".join(sse(seq, kind, text) for seq, kind, text in events)
                    try:
                        await reply.send({"type": "http.response.body", "body": body, "more_body": True})
                    except Exception as exc:  # noqa: BLE001 - the client went away
                        error = exc
                if error is not None:
                    logger.warning("reply %s failed: %r", reply.id, error)
                    if reply.delivered is not None and not reply.delivered.done():
                        reply.delivered.set_exception(error)
                elif events[-1][1] == "done" and reply.delivered is not None and not reply.delivered.done():
                    reply.delivered.set_result(True)

    async def _append(self, taken: list[tuple[Reply, list]]) -> dict:
        """One pipeline: a script call per reply appending its events; the replies whose call failed."""
        pipe = self.redis.pipeline(transaction=False)
        for reply, events in taken:
            pipe.evalsha(self.append_sha, 1, f"tenex:stream:{{{reply.id}}}", STREAM_MAXLEN, STREAM_TTL,
                         events[0][0], *(text for _seq, _kind, text in events))
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - the connection failed: every call of the round
            results = [exc] * len(taken)
        return {reply: result for (reply, _events), result in zip(taken, results, strict=True)
                if isinstance(result, Exception)}

    async def _checkpoint_forever(self) -> None:
        """Once a second: the partial content of every live reply that moved, one UPDATE per workspace."""
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            due: dict[str, list[Reply]] = {}
            for reply in self.live.values():
                if reply.seq > reply.saved_seq:
                    due.setdefault(reply.workspace_id, []).append(reply)
            if not due:
                continue
            snapshot = {ws: [(r, "".join(r.content), json.dumps(r.tool_calls), r.seq) for r in replies]
                        for ws, replies in due.items()}
            try:
                async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
                    for workspace_id, rows in snapshot.items():
                        await conn.execute(RLS_SQL, [workspace_id])
                        await conn.execute(CHECKPOINT_SQL, [[r.id for r, *_ in rows], [c for _r, c, _t, _s in rows],
                                                            [t for _r, _c, t, _s in rows], [s for *_, s in rows],
                                                            PRODUCER])
                for rows in snapshot.values():
                    for reply, _content, _tools, seq in rows:
                        reply.saved_seq = seq
            except Exception:  # noqa: BLE001 - the next tick tries again
                logger.warning("checkpoint of %d replies failed", sum(map(len, due.values())), exc_info=True)


FLOOR = Floor()


def compose(question: str, results: list[dict]) -> str:
    """The local provider's reply for these search results (agents/providers/local.py)."""
    topic = " ".join(question.split())
    if len(topic) > 120:
        topic = topic[:119].rsplit(" ", 1)[0] + "…"
    topic = topic or "your request"
    parts = [f"Here is what your knowledge base says about “{topic}”:"]
    for passage in results[:MAX_QUOTES]:
        text = " ".join(str(passage["passage"] or "").split())
        parts.append(f"From “{passage['title'] or 'a document'}”: “{text}”")
    return "\n\n".join(parts)


class UnknownKey(Exception):
    pass


async def reply_stream(send: Send, key: str, thread_id: str, content: str) -> None:
    """One reply; raises UnknownKey or LookupError (no such thread) before the response head."""
    if not key.startswith("tnx_") or len(key) != 42:
        raise UnknownKey
    user_id, reply_id = new_id("msg"), new_id("msg")
    now = datetime.now(UTC)
    async with FLOOR.pool.connection() as conn:
        # The key by its hash (autocommit), then the send's transaction on the same connection.
        found = await (await conn.execute(KEY_SQL, [key[:12], hashlib.sha256(key.encode()).hexdigest()])).fetchone()
        if found is None:
            raise UnknownKey
        workspace_id = found[0]
        async with conn.pipeline(), conn.transaction():
            await conn.execute(RLS_SQL, [workspace_id])
            locked = await conn.execute(LOCK_SQL, [thread_id])
            history_cursor = await conn.execute(HISTORY_SQL, [thread_id, HISTORY_ROWS])
            thread = await locked.fetchone()
            if thread is None:
                raise LookupError(thread_id)
            count, _auto, _title, system = thread
            history_chars = len(system)
            used = 0
            for _role, text in await history_cursor.fetchall():  # newest first, up to the token budget
                used += max(1, len(text) // CHARS_PER_TOKEN) if text else 0
                if used > HISTORY_TOKEN_BUDGET:
                    break
                history_chars += len(text)
            await conn.execute(INSERT_SQL, [user_id, workspace_id, thread_id, count + 1, content, now, now,
                                            reply_id, workspace_id, thread_id, count + 2, now, now, PRODUCER])
            await conn.execute(APPENDED_SQL, [now, now, now, " ".join(content.split())[:80], thread_id])
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": RETRY_HINT, "more_body": True})
    reply = Reply(reply_id, thread_id, workspace_id, send)
    reply.delivered = asyncio.get_running_loop().create_future()
    FLOOR.live[reply_id] = reply
    try:
        query = content.strip()[:500]
        call = {"id": new_id("call"), "name": "search_knowledge", "arguments": {"query": query}, "result": None,
                "status": "running"}
        reply.tool_calls = [call]
        reply.event("tool_call", {"tool_call": call})
        FLOOR.publish(reply)
        terms = [t for t in dict.fromkeys(w.lower() for w in TERMS.findall(query)) if t != "or"][:32]
        loose = " or ".join(terms)
        async with FLOOR.pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute(RLS_SQL, [workspace_id])
            rows = await (await conn.execute(SEARCH_SQL, [loose, query, loose, SEARCH_LIMIT])).fetchall()
        results = [{"document_id": document_id, "title": title, "passage": text, "score": round(rank, 4),
                    "source_url": source_url} for document_id, title, text, rank, _complete, source_url in rows]
        call = {**call, "result": {"query": query, "results": results}, "status": "complete"}
        reply.tool_calls = [call]
        reply.event("tool_call", {"tool_call": call})
        FLOOR.publish(reply)
        words = 0
        for word in WORDS.findall(compose(content, results)):
            if words and (DELAY or words % BURST_WORDS == 0):
                await asyncio.sleep(DELAY)
            words += 1
            reply.content.append(word)
            reply.event("delta", {"delta": word})
            FLOOR.publish(reply)
        # The local provider's usage: both rounds' input (history, question, then the tool's result).
        first_round = (history_chars + len(content)) // CHARS_PER_TOKEN
        second_round = (history_chars + len(content) + len(json.dumps(call["result"]))) // CHARS_PER_TOKEN
        usage = {"input_tokens": first_round + second_round, "output_tokens": words}
        text = "".join(reply.content)
        done = datetime.now(UTC)
        async with FLOOR.pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute(RLS_SQL, [workspace_id])
            await conn.execute(FINAL_SQL, [text, json.dumps(reply.tool_calls), json.dumps(usage), done,
                                           reply.seq + 1, reply_id, PRODUCER])
            await conn.execute(ACTIVITY_SQL, [done, done, done, thread_id])
        message = {"id": reply_id, "object": "message", "thread_id": thread_id, "role": "assistant", "content": text,
                   "status": "complete", "attachments": [], "tool_calls": reply.tool_calls, "usage": usage,
                   "error": None, "created_at": timestamp(now), "completed_at": timestamp(done)}
        reply.event("done", {"message": message})
        FLOOR.publish(reply)
        await reply.delivered
    finally:
        FLOOR.live.pop(reply_id, None)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if body is None:
        return
    if scope["method"] == "GET" and scope["path"] == "/healthz":
        await FLOOR.start()
        await answer(send, 200, b"ok")
        return
    match = PATH.match(scope["path"])
    if scope["method"] != "POST" or match is None:
        await answer(send, 404, b"POST /api/v1/chat/threads/<id>/messages")
        return
    await FLOOR.start()
    try:
        content = json.loads(body)["content"]
    except (ValueError, KeyError, TypeError):
        await answer(send, 400, b"body: {\"content\": ...}")
        return
    key = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ").strip()
    try:
        await reply_stream(send, key, match.group(1), content)
    except UnknownKey:
        await answer(send, 401, b"unknown key")
    except LookupError:  # the thread is not in this workspace
        await answer(send, 404, b"no such thread")
