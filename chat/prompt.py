"""What the assistant is given to write a reply: the system prompt, the history window, the tools.

Built once, in the transaction that appends the reply (`generation_input`), so the producer starts
without a database step of its own and the history is exactly what precedes the reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection

from agents.context import system_prompt_for
from agents.providers.base import ATTACHMENT_MARKER, Turn
from agents.runtime import AssistantRequest, estimate_tokens
from chat.appends import ThreadHead
from chat.models import Attachment, Message, Thread
from workspaces.tenancy import Scope

DEFAULT_OPEN_TOOLS = ("search_knowledge", "run_agent")
# However long a thread grows, a turn reads at most this many earlier rows.
HISTORY_SCAN_LIMIT = 5000
HISTORY_FIRST_PAGE = 16


@dataclass
class GenerationInput:
    thread_id: str
    created_at: datetime  # the reply's, so its ending is recorded and serialized without reading it back
    request: AssistantRequest


def generation_input(
    workspace_id: str, thread: Thread | ThreadHead, position: int, created_at: datetime
) -> GenerationInput:
    """What the assistant needs to write the reply at `position` of `thread`.

    Read in the transaction that appends the reply, with the thread's row locked, so the history is
    exactly what precedes the reply; the producer then starts without a database step of its own.
    """
    request = AssistantRequest(
        scope=Scope(workspace_id=workspace_id, user_id=thread.user_id),
        thread_id=thread.pk,
        system=system_prompt_for(thread.context or {}, thread.system_prompt),
        history=history_window(workspace_id, thread.pk, position),
        tool_names=tool_names(thread),
        model=settings.TENEX_LLM_MODEL,
        knowledge_document_ids=tuple(thread.knowledge_document_ids or ()),
    )
    return GenerationInput(thread_id=thread.pk, created_at=created_at, request=request)


def render_user_turn(content: str, attachments: list[tuple[str, str, str]]) -> str:
    """The user's text followed by what they attached ((title, type, content) each), as the assistant sees it."""
    parts = [content]
    for title, kind, attached in attachments:
        parts.append(f"{ATTACHMENT_MARKER}{title or kind} ---\n{attached}")
    return "".join(parts)


# The thread's messages before a position, newest first, with whether each has attachments.
_EARLIER_SQL = (
    "SELECT m.id, m.role, m.content, EXISTS (SELECT 1 FROM chat_attachment a WHERE a.workspace_id = %s "
    "AND a.message_id = m.id), m.position FROM chat_message m "
    "WHERE m.workspace_id = %s AND m.thread_id = %s AND m.position < %s ORDER BY m.position DESC LIMIT %s"
)


def history_window(workspace_id: str, thread_id: str, before: int) -> list[Turn]:
    """The turns of the thread's messages before position `before` that the provider may see,
    oldest first, as plain rows (no model instances, one hand-written statement: a hot path).

    Rows are read newest first, in pages that double (one query for most threads), until the
    per-message estimate `agents.runtime.trim_history` uses, on the text alone (attachments and tool
    calls only add), passes the budget, that row included: so everything `trim_history` would keep
    is here, and a long thread's old turns are never read. Attachments are read for the user turns
    that have some, in one more query.
    """
    budget = settings.TENEX_HISTORY_TOKEN_BUDGET
    rows: list[tuple[str, str, str, bool, int]] = []
    used = 0
    page = HISTORY_FIRST_PAGE
    with connection.cursor() as cursor:
        while len(rows) < HISTORY_SCAN_LIMIT and used <= budget:
            limit = min(page, HISTORY_SCAN_LIMIT - len(rows))
            below = rows[-1][4] if rows else before
            cursor.execute(_EARLIER_SQL, [workspace_id, workspace_id, thread_id, below, limit])
            fetched = cursor.fetchall()
            for row in fetched:
                rows.append(row)
                used += estimate_tokens(row[2])
                if used > budget:
                    break
            if len(fetched) < limit:
                break
            page *= 2
    rows.reverse()

    attached: dict[str, list[tuple[str, str, str]]] = {}
    with_attachments = [row[0] for row in rows if row[1] == Message.Role.USER and row[3]]
    if with_attachments:
        for message_id, title, kind, content in (
            Attachment.objects.for_workspace(workspace_id)
            .filter(message_id__in=with_attachments)
            .order_by("message_id", "position", "id")
            .values_list("message_id", "title", "type", "content")
        ):
            attached.setdefault(message_id, []).append((title, kind, content))
    turns: list[Turn] = []
    for pk, role, content, _attached, _position in rows:
        if role == Message.Role.USER:
            turns.append(Turn(role="user", content=render_user_turn(content, attached.get(pk, []))))
        elif content:
            turns.append(Turn(role="assistant", content=content))
    return turns


def tool_names(thread: Thread | ThreadHead) -> list[str]:
    """The tools the thread's assistant may call: its agent's, or the open assistant's."""
    from agents.tools import registered_tools

    available = registered_tools()
    agent = (thread.context or {}).get("agent")
    wanted = list(agent.get("tools") or ["search_knowledge"]) if agent else list(DEFAULT_OPEN_TOOLS)
    return [name for name in wanted if name in available]
