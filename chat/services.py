"""Every write to threads and messages. Keyword-only, atomic, side effects after commit."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.context import build_thread_context
from agents.models import Agent
from chat import appends
from chat.appends import ThreadHead
from chat.models import Attachment, File, Message, Thread
from knowledge.models import Document
from workspaces.compat import set_prefetched
from workspaces.errors import ReferenceNotFound
from workspaces.tenancy import Scope, lock_or_not_found, unique_or_none

TITLE_FROM_MESSAGE_MAX = 80
_WHITESPACE = re.compile(r"\s+")


def title_from_content(content: str) -> str:
    """The first words of a message, at most 80 characters, cut on a word boundary."""
    text = _WHITESPACE.sub(" ", content).strip()
    if len(text) <= TITLE_FROM_MESSAGE_MAX:
        return text
    cut = text[: TITLE_FROM_MESSAGE_MAX + 1]
    boundary = cut.rfind(" ")
    if boundary <= 0:
        return text[:TITLE_FROM_MESSAGE_MAX]
    return cut[:boundary].rstrip()


def _agent_in_scope(scope: Scope, agent_id: str | None) -> Agent | None:
    if not agent_id:
        return None
    agent = unique_or_none(Agent.objects.for_scope(scope).filter(pk=agent_id))
    if agent is None:
        raise ReferenceNotFound(agent_id)
    return agent


def _documents_in_scope(scope: Scope, document_ids: list[str]) -> list[str]:
    wanted = list(dict.fromkeys(document_ids))  # keep order, drop repeats
    if not wanted:
        return []
    found = set(Document.objects.for_scope(scope).filter(pk__in=wanted).values_list("pk", flat=True))
    if len(found) != len(wanted):
        raise ReferenceNotFound(next(d for d in wanted if d not in found))
    return wanted


@transaction.atomic
def thread_create(
    *,
    scope: Scope,
    user_id: str,
    title: str = "",
    system_prompt: str = "",
    agent_id: str | None = None,
    knowledge_document_ids: list[str] | None = None,
    metadata: dict | None = None,
) -> Thread:
    agent = _agent_in_scope(scope, agent_id)
    documents = _documents_in_scope(scope, knowledge_document_ids or [])
    now = timezone.now()
    return Thread.objects.create(
        workspace_id=scope.workspace_id,
        user_id=user_id,
        title=title,
        title_is_auto=not title,
        system_prompt=system_prompt,
        agent=agent,
        knowledge_document_ids=documents,
        context=build_thread_context(workspace_id=scope.workspace_id, agent=agent),
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
        activity_at=now,
    )


@transaction.atomic
def thread_update(*, scope: Scope, thread: Thread, changes: dict[str, Any]) -> Thread:
    """Apply the changes to the thread, locked first: one deleted meanwhile is a 404, not a lost save."""
    thread = lock_or_not_found(Thread.objects.for_scope(scope), thread.pk)
    fields: list[str] = []
    if "title" in changes:
        thread.title = changes["title"]
        thread.title_is_auto = False
        fields += ["title", "title_is_auto"]
    for name in ("pinned", "archived", "system_prompt", "metadata"):
        if name in changes:
            setattr(thread, name, changes[name])
            fields.append(name)
    if changes.get("refresh_context"):
        agent = None
        if thread.agent_id:
            agent = unique_or_none(Agent.objects.for_scope(scope).filter(pk=thread.agent_id))
        thread.context = build_thread_context(workspace_id=scope.workspace_id, agent=agent)
        fields.append("context")
    if fields:
        thread.updated_at = timezone.now()
        thread.save(update_fields=[*fields, "updated_at"])
    return thread


@transaction.atomic
def thread_delete(*, scope: Scope, thread: Thread) -> None:
    """Delete a thread with its messages, attachments and stored files (blobs after commit).

    The thread's row is locked before its messages are collected: a send holds the same lock while
    it appends, so the delete either waits for it and deletes its messages too, or goes first and
    the send finds no thread (404). Collecting first let a send commit messages in between, and
    the delete then failed on their foreign key.
    """
    thread = lock_or_not_found(Thread.objects.for_scope(scope), thread.pk)
    files = list(File.objects.for_workspace(scope.workspace_id).filter(thread=thread))
    blob_names = [f.blob.name for f in files if f.blob]
    streaming = list(
        Message.objects.for_workspace(scope.workspace_id)
        .filter(thread=thread, status=Message.Status.STREAMING)
        .values_list("pk", flat=True)
    )
    thread.delete()

    def after_commit() -> None:
        from chat.stream.runtime import get_runtime

        for message_id in streaming:
            get_runtime().cancels.request_cancel(message_id)
        storage = File._meta.get_field("blob").storage
        for name in blob_names:
            storage.delete(name)

    transaction.on_commit(after_commit)


def _lock_thread(scope: Scope, thread: Thread | ThreadHead) -> ThreadHead:
    # The row lock serialises appends to one thread, so positions never collide, and orders them
    # with a delete of the thread (which takes the same lock first). A head this transaction already
    # locked (the send endpoint locks it first thing) is not read again.
    if isinstance(thread, ThreadHead) and thread.locked:
        return thread
    head = appends.thread_head(scope, thread.pk, lock=True)
    if head is None:
        raise ReferenceNotFound(thread.pk)
    return head


def _new_message(
    *, scope: Scope, thread_id: str, position: int, role: str, content: str, status: str, now,
    tool_calls: list[dict] | None = None, lease_expires_at=None, producer: str = "",
) -> Message:
    return Message(
        workspace_id=scope.workspace_id,
        thread_id=thread_id,
        position=position,
        role=role,
        content=content,
        status=status,
        tool_calls=tool_calls or [],
        created_at=now,
        completed_at=now if status != Message.Status.STREAMING else None,
        lease_expires_at=lease_expires_at,
        producer=producer,
    )


def _insert_messages(scope: Scope, messages: list[tuple[Message, list[dict] | None]]) -> None:
    """Insert new messages (one statement for all) and their attachments (one more, if any)."""
    appends.insert_messages([message for message, _attachments in messages])
    rows = [
        Attachment(workspace_id=scope.workspace_id, message=message, position=index, **attachment)
        for message, attachments in messages
        for index, attachment in enumerate(attachments or [])
    ]
    created = Attachment.objects.bulk_create(rows) if rows else []
    for message, _attachments in messages:
        # What was just written is what the message's attachments are: serializing it needs no query.
        mine = [row for row in created if row.message is message]
        set_prefetched(message, "attachments", mine)


def _record_appended(
    *, scope: Scope, thread: Thread | ThreadHead, locked: ThreadHead, first: Message, count: int, now
) -> None:
    """Move the thread's count, recency and automatic title with `count` newly appended messages;
    a `Thread` passed in as `thread` is brought up to date too."""
    title = None
    if first.role == Message.Role.USER and locked.title_is_auto and not locked.title:
        title = title_from_content(first.content)
    appends.record_appended(scope.workspace_id, locked.id, count, now, title)
    if isinstance(thread, Thread):
        if title is not None:
            thread.title = title
        thread.message_count = locked.message_count + count
        thread.last_message_at = thread.activity_at = thread.updated_at = now


@transaction.atomic
def message_append(
    *,
    scope: Scope,
    thread: Thread,
    role: str,
    content: str,
    status: str = Message.Status.COMPLETE,
    attachments: list[dict] | None = None,
    tool_calls: list[dict] | None = None,
) -> Message:
    """Append one message to a thread: position, counts, recency and the automatic title move with it."""
    locked = _lock_thread(scope, thread)
    now = timezone.now()
    message = _new_message(
        scope=scope, thread_id=locked.id, position=locked.message_count + 1, role=role, content=content,
        status=status, now=now, tool_calls=tool_calls,
    )
    _insert_messages(scope, [(message, attachments)])
    _record_appended(scope=scope, thread=thread, locked=locked, first=message, count=1, now=now)
    return message


# No savepoint: inside a request's transaction (PostgreSQL) a failure here fails the request whole.
@transaction.atomic(savepoint=False)
def message_send(
    *, scope: Scope, thread: Thread | ThreadHead, content: str, attachments: list[dict] | None = None
) -> tuple[Message, Message]:
    """Append the user's message and the assistant's reply (streaming); generation starts after commit.

    `thread` may be the head this transaction locked (`chat.appends.thread_head(..., lock=True)`).
    """
    from chat.attachments import attach_files_to_thread, resolve_attachments
    from chat.prompt import generation_input
    from chat.stream.records import lease_deadline
    from chat.stream.runtime import get_runtime

    resolved = resolve_attachments(scope=scope, items=attachments, thread_id=thread.pk) if attachments else []
    # One row lock for both messages: their positions are consecutive and no other append interleaves.
    locked = _lock_thread(scope, thread)
    now = timezone.now()
    user_message = _new_message(
        scope=scope, thread_id=locked.id, position=locked.message_count + 1, role=Message.Role.USER,
        content=content, status=Message.Status.COMPLETE, now=now,
    )
    # This process produces the reply, leased to it from the start: if it dies before its
    # producer's first checkpoint, the reply still ends as `interrupted` instead of streaming forever.
    runtime = get_runtime()
    reply = _new_message(
        scope=scope, thread_id=locked.id, position=locked.message_count + 2, role=Message.Role.ASSISTANT,
        content="", status=Message.Status.STREAMING, now=now, lease_expires_at=lease_deadline(),
        producer=runtime.producer_id,
    )
    _insert_messages(scope, [(user_message, resolved), (reply, None)])
    if resolved:
        attach_files_to_thread(scope=scope, thread_id=locked.id, attachments=resolved)
    loaded = generation_input(scope.workspace_id, locked, reply.position, reply.created_at)
    _record_appended(scope=scope, thread=thread, locked=locked, first=user_message, count=2, now=now)
    workspace_id, reply_id = scope.workspace_id, reply.pk

    transaction.on_commit(lambda: runtime.start(workspace_id, reply_id, loaded))
    return user_message, reply


def search_config_set(*, workspace_id: str, config: str) -> int:
    """Set the workspace's text search configuration and re-index its threads and messages with it
    (PostgreSQL; the rows' generated vectors follow their `search_config`). Returns the rows changed."""
    from django.db import connection

    from workspaces.models import SEARCH_CONFIGS, Workspace
    from workspaces.tenancy import tenant_context

    if config not in SEARCH_CONFIGS:
        raise ValueError(f"unknown text search configuration {config!r}")
    changed = 0
    with tenant_context(workspace_id):
        Workspace.objects.filter(pk=workspace_id).update(search_config=config)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for table in (Thread._meta.db_table, Message._meta.db_table):
                    cursor.execute(
                        f"UPDATE {table} SET search_config = %s::regconfig "  # noqa: S608 - table names are ours
                        "WHERE workspace_id = %s AND search_config <> %s::regconfig",
                        [config, workspace_id, config],
                    )
                    changed += cursor.rowcount
    return changed
