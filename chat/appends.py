"""The statements every append to a thread runs, written once as SQL (PostgreSQL and SQLite alike).

A send locks its thread's row, inserts the user's message and the reply, and moves the thread's
count, recency and automatic title: the same four statements for every reply, so they are written
by hand instead of compiled by the ORM on each request. Each names the workspace, like every tenant
query (tests/test_tenant_queries.py), and runs under the request's row-level security.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection

from chat.models import Message, Thread
from workspaces.tenancy import Scope

_HEAD_COLUMNS = (
    "t.id, t.user_id, t.title, t.title_is_auto, t.message_count, t.system_prompt, t.knowledge_document_ids, "
    "t.context"
)
_MESSAGE_COLUMNS = (
    "id", "workspace_id", "thread_id", "position", "role", "content", "status", "tool_calls", "usage",
    "error", "created_at", "completed_at", "last_seq", "lease_expires_at", "producer",
)
_PREPARED_FIELDS = {name: Message._meta.get_field(name) for name in ("tool_calls", "usage", "error")}
_DATETIME = Thread._meta.get_field("updated_at")


class ThreadHead(NamedTuple):
    """The columns of a thread that appending to it reads."""

    id: str
    user_id: str
    title: str
    title_is_auto: bool
    message_count: int
    system_prompt: str
    knowledge_document_ids: list
    context: dict
    locked: bool  # read FOR UPDATE in the current transaction: appends to it are serialised

    @property
    def pk(self) -> str:
        return self.id


def _json(value: Any) -> Any:
    # PostgreSQL hands jsonb over as text (Django registers a text loader for it); SQLite stores text.
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _datetime(value: datetime | None) -> Any:
    return _DATETIME.get_db_prep_save(value, connection)


def thread_head(scope: Scope, thread_id: str, *, lock: bool) -> ThreadHead | None:
    """The thread in scope (a personal key's own threads only), or None; with `lock`, its row stays
    locked until the transaction ends (where the database has row locks)."""
    sql = f"SELECT {_HEAD_COLUMNS} FROM chat_thread t WHERE t.workspace_id = %s AND t.id = %s"
    params = [scope.workspace_id, thread_id]
    if scope.owner_user_id is not None:
        sql += " AND t.user_id = %s"
        params.append(scope.owner_user_id)
    locked = lock and connection.features.has_select_for_update
    if locked:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    pk, user_id, title, title_is_auto, count, system_prompt, documents, context = row
    return ThreadHead(
        pk, user_id, title, bool(title_is_auto), count, system_prompt, _json(documents) or [], _json(context) or {},
        locked,
    )


def insert_messages(messages: list[Message]) -> None:
    """Insert new messages in one statement (attachments are the caller's: few messages have any)."""
    values = ", ".join(["(" + ", ".join(["%s"] * len(_MESSAGE_COLUMNS)) + ")"] * len(messages))
    params: list[Any] = []
    for m in messages:
        params += [
            m.pk, m.workspace_id, m.thread_id, m.position, m.role, m.content, m.status,
            _PREPARED_FIELDS["tool_calls"].get_db_prep_save(m.tool_calls, connection),
            _PREPARED_FIELDS["usage"].get_db_prep_save(m.usage, connection),
            _PREPARED_FIELDS["error"].get_db_prep_save(m.error, connection),
            _datetime(m.created_at), _datetime(m.completed_at), m.last_seq, _datetime(m.lease_expires_at),
            m.producer,
        ]
    sql = f"INSERT INTO chat_message ({', '.join(_MESSAGE_COLUMNS)}) VALUES {values}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    for m in messages:
        m._state.adding = False  # saved: Model._state (documented) as bulk_create leaves it
        m._state.db = connection.alias


def record_appended(workspace_id: str, thread_id: str, count: int, now: datetime, title: str | None) -> None:
    """Move the thread's count and recency with `count` newly appended messages (and its automatic
    title, when `title` is given)."""
    stamp = _datetime(now)
    sql = (
        "UPDATE chat_thread SET message_count = message_count + %s, last_message_at = %s, activity_at = %s, "
        "updated_at = %s"
    )
    params: list[Any] = [count, stamp, stamp, stamp]
    if title is not None:
        sql += ", title = %s"
        params.append(title)
    sql += " WHERE chat_thread.workspace_id = %s AND chat_thread.id = %s"
    params += [workspace_id, thread_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
