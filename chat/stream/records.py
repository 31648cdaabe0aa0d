"""Synchronous database steps of a generation, each one short transaction in its workspace.

The reply is leased to the process that appends it (its input read in that same transaction); the
producer checkpoints partial content (renewing its lease) and finalizes content, tool calls, usage
and status in one transaction. Every write is conditional on the message
still streaming under this producer, so a producer that lost its lease can never overwrite the
outcome another process recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.models import Message
from workspaces.compat import set_prefetched
from workspaces.tenancy import set_database_workspace, tenant_context, unique_or_none


@dataclass
class GenerationState:
    seq: int = 0
    content: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    version: int = 0  # bumped on every change, so checkpoints write only when needed

    def record_tool_call(self, envelope: dict) -> None:
        for index, existing in enumerate(self.tool_calls):
            if existing["id"] == envelope["id"]:
                self.tool_calls[index] = envelope
                break
        else:
            self.tool_calls.append(envelope)
        self.version += 1

    def settled_tool_calls(self) -> list[dict]:
        """Tool calls as history keeps them: one still running when the reply ended has failed."""
        settled = []
        for call in self.tool_calls:
            if call.get("status") == "running":
                call = {**call, "status": "failed", "result": {"error": "The reply ended before this tool finished."}}
            settled.append(call)
        return settled


def lease_deadline():
    return timezone.now() + timedelta(seconds=settings.TENEX_STREAM_LEASE_SECONDS)


def checkpoint_many(producer: str, replies: list[tuple[str, str, GenerationState]]) -> set[str]:
    """Save partial content and renew the lease of many replies in one transaction.

    `replies` holds (workspace id, message id, state) triples; returns the message ids this producer
    still owns (the others were ended by another process, whose ending stands). One transaction a
    tick for every reply a process is writing, however many there are, instead of one each.
    """
    by_workspace: dict[str, dict[str, GenerationState]] = {}
    for workspace_id, message_id, state in replies:
        by_workspace.setdefault(workspace_id, {})[message_id] = state
    owned: set[str] = set()
    deadline = lease_deadline()
    with transaction.atomic():
        for workspace_id, states in by_workspace.items():
            set_database_workspace(workspace_id)  # row-level security: one workspace at a time
            rows = list(
                Message.objects.for_workspace(workspace_id)
                .select_for_update()
                .filter(pk__in=list(states), status=Message.Status.STREAMING, producer=producer)
                .only("pk")
            )
            _save_partials(workspace_id, [(row.pk, states[row.pk]) for row in rows], deadline)
            owned.update(row.pk for row in rows)
    return owned  # the workspace setting was local to the transaction: it is gone with it


_PARTIAL_FIELDS = ("content", "tool_calls", "last_seq", "lease_expires_at")


def _save_partials(workspace_id: str, replies: list[tuple[str, GenerationState]], deadline) -> None:
    """One parameterized UPDATE per reply, all sent together (psycopg pipelines `executemany`).

    Django's `bulk_update` builds a CASE expression per field and row: with 1,000 slow streams
    open it took most of the process's CPU, every second. The rows are already locked (and owned)
    in this transaction, under the workspace's row-level security.
    """
    if not replies:
        return
    quote = connection.ops.quote_name
    fields = [Message._meta.get_field(name) for name in _PARTIAL_FIELDS]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    workspace_column = Message._meta.get_field("workspace").column
    sql = (
        f"UPDATE {quote(Message._meta.db_table)} SET {assignments} "
        f"WHERE {quote(Message._meta.pk.column)} = %s AND {quote(workspace_column)} = %s"
    )
    params = [
        [
            field.get_db_prep_save(value, connection)
            for field, value in zip(fields, (state.content, state.tool_calls, state.seq, deadline), strict=True)
        ]
        + [message_id, workspace_id]
        for message_id, state in replies
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def finalize(
    workspace_id: str, message_id: str, producer: str | None, state: GenerationState, status: str,
    error: dict | None, known: tuple[str, datetime] | None = None,
) -> dict | None:
    """Write the outcome in one transaction; the serialized message, or None if it was not ours to end.

    `producer=None` is an orphan's ending (the producer died): it takes any streaming message.
    `state.seq` must already count the terminal event this outcome will be published as. `known` is
    the reply's (thread id, created_at) when the caller has them (its producer does): then the
    ending is one conditional UPDATE of the message and one of its thread, nothing read back.
    """
    with tenant_context(workspace_id):
        if known is None:
            candidates = Message.objects.for_workspace(workspace_id).filter(
                pk=message_id, status=Message.Status.STREAMING
            )
            if producer is not None:
                candidates = candidates.filter(producer=producer)
            found = list(candidates.select_for_update().values_list("thread_id", "created_at")[:1])
            if not found:
                return None
            known = found[0]
        thread_id, created_at = known
        now = timezone.now()
        ending = _ending(state, status, error, now)
        if not _record_ending(workspace_id, message_id, producer, thread_id, ending):
            return None  # ended meanwhile by another process (our lease lapsed), or deleted
        return _serialized(workspace_id, message_id, thread_id, created_at, ending)


_ENDING_NAMES = ("content", "tool_calls", "usage", "status", "error", "completed_at", "last_seq", "lease_expires_at")
_ENDING_FIELDS = tuple(Message._meta.get_field(name) for name in _ENDING_NAMES)
_COMPLETED_AT = _ENDING_NAMES.index("completed_at")
_ENDING_SQL = (
    "UPDATE chat_message SET "
    + ", ".join(f"{field.column} = %s" for field in _ENDING_FIELDS)
    + " WHERE chat_message.workspace_id = %s AND chat_message.id = %s AND chat_message.status = %s"
)
_THREAD_ACTIVITY_SQL = (
    "UPDATE chat_thread SET last_message_at = %s, activity_at = %s, updated_at = %s "
    "WHERE chat_thread.workspace_id = %s AND chat_thread.id = %s"
)


def _record_ending(workspace_id: str, message_id: str, producer: str | None, thread_id: str, ending: dict) -> bool:
    """Write `ending` on the message if it is still streaming (under `producer`, unless None), and the
    thread's recency with it: two hand-written UPDATEs, the same for every reply. False: not ours."""
    params = [field.get_db_prep_save(ending[field.name], connection) for field in _ENDING_FIELDS]
    stamp = params[_COMPLETED_AT]  # as the database takes it
    params += [workspace_id, message_id, Message.Status.STREAMING]
    sql = _ENDING_SQL
    if producer is not None:
        sql += " AND chat_message.producer = %s"
        params.append(producer)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            return False
        cursor.execute(_THREAD_ACTIVITY_SQL, [stamp, stamp, stamp, workspace_id, thread_id])
    return True


def _ending(state: GenerationState, status: str, error: dict | None, now: datetime) -> dict:
    from chat.schemas import usage_data

    return {
        "content": state.content,
        "tool_calls": state.settled_tool_calls(),
        "usage": usage_data(state.usage),
        "status": status,
        "error": error,
        "completed_at": now,
        "last_seq": state.seq,
        "lease_expires_at": None,
    }


def _serialized(workspace_id: str, message_id: str, thread_id: str, created_at: datetime, ending: dict) -> dict:
    """The reply as `ending` leaves it, serialized without a query (replies carry no attachments)."""
    from chat.schemas import message_data

    message = Message(
        pk=message_id, workspace_id=workspace_id, thread_id=thread_id, role=Message.Role.ASSISTANT,
        created_at=created_at, **ending,
    )
    set_prefetched(message, "attachments", [])
    return message_data(message)


def ending_message(
    workspace_id: str, message_id: str, state: GenerationState, status: str, error: dict | None,
    known: tuple[str, datetime],
) -> dict:
    """The message `finalize` would answer for this outcome, built without the database (for an
    ending published before the database could record it)."""
    thread_id, created_at = known
    return _serialized(workspace_id, message_id, thread_id, created_at, _ending(state, status, error, timezone.now()))


@dataclass
class MessageState:
    status: str
    thread_id: str
    last_seq: int
    lease_expired: bool
    content: str
    tool_calls: list
    message: dict | None  # serialized, when final


def message_state(workspace_id: str, message_id: str) -> MessageState | None:
    from chat.schemas import message_data

    with tenant_context(workspace_id):
        message = unique_or_none(Message.objects.for_workspace(workspace_id).filter(pk=message_id))
        if message is None:
            return None
        final = message.status != Message.Status.STREAMING
        expired = (
            not final and (message.lease_expires_at is None or message.lease_expires_at <= timezone.now())
        )
        return MessageState(
            status=message.status,
            thread_id=message.thread_id,
            last_seq=message.last_seq,
            lease_expired=expired,
            content=message.content,
            tool_calls=list(message.tool_calls or []),
            message=message_data(message) if final else None,
        )


def expired_streaming_messages(workspace_id: str) -> list[str]:
    with tenant_context(workspace_id):
        return list(
            Message.objects.for_workspace(workspace_id)
            .filter(status=Message.Status.STREAMING, lease_expires_at__lt=timezone.now())
            .values_list("pk", flat=True)
        )


def streaming_workspaces() -> list[str]:
    from workspaces.models import Workspace

    return list(Workspace.objects.values_list("pk", flat=True))
