"""The assistant runtime: the provider/tool loop, independent of HTTP and of how events are stored.

`run_assistant` calls the provider, streams its text out, runs the tools it asks for inside the
thread's workspace scope, feeds the results back and calls the provider again, until the provider
answers without asking for a tool (or the round limit is reached). Every tool call is reported twice:
once `running`, once `complete` or `failed` with its result.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from agents.providers.base import (
    Provider,
    ProviderRequest,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    Turn,
    Usage,
)
from workspaces.ids import new_call_id
from workspaces.tenancy import Scope

CHARS_PER_TOKEN = 4


@dataclass
class ToolCallUpdate:
    """A tool call envelope as stored in history: {id, name, arguments, result, status}."""

    envelope: dict[str, Any]


@dataclass
class AssistantRequest:
    scope: Scope
    thread_id: str | None
    system: str
    history: list[Turn]  # oldest first; the last one is the new user turn
    tool_names: list[str] = field(default_factory=list)
    model: str = ""
    knowledge_document_ids: tuple[str, ...] = ()  # the thread's pinned documents, ranked first


RuntimeEvent = TextDelta | ToolCallUpdate | Usage


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN) if text else 0


def trim_history(turns: list[Turn], budget_tokens: int) -> list[Turn]:
    """Drop the oldest turns until the rest fits the budget; the newest turn always stays."""
    if not turns:
        return []
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = estimate_tokens(turn.content) + sum(
            estimate_tokens(json.dumps(call.arguments)) for call in turn.tool_calls
        )
        if kept and used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # A conversation must not open with a tool result or an assistant reply to something cut off.
    while len(kept) > 1 and kept[0].role != "user":
        kept.pop(0)
    return kept


def _run_tool_sync(request: AssistantRequest, name: str, arguments: dict) -> tuple[str, Any]:
    from agents.tools import ToolContext, run_tool

    context = ToolContext(
        scope=request.scope, thread_id=request.thread_id, knowledge_document_ids=request.knowledge_document_ids
    )
    # `run_tool` opens the workspace's transaction itself (or leaves it to a tool that calls out).
    return run_tool(context, name, arguments)


async def run_assistant(request: AssistantRequest, provider: Provider) -> AsyncIterator[RuntimeEvent]:
    from agents.tools import tool_specs

    specs: list[ToolSpec] = tool_specs(request.tool_names) if request.tool_names else []
    turns = trim_history(list(request.history), settings.TENEX_HISTORY_TOKEN_BUDGET)
    input_tokens = output_tokens = 0
    # Tools run on worker threads that close their database connections after each call.
    run_tool = database_sync_to_async(_run_tool_sync, thread_sensitive=False)

    for _round in range(settings.TENEX_MAX_TOOL_ROUNDS + 1):
        offer_tools = specs if _round < settings.TENEX_MAX_TOOL_ROUNDS else []
        provider_request = ProviderRequest(
            system=request.system, turns=turns, tools=offer_tools, model=request.model
        )
        text_parts: list[str] = []
        calls: list[ToolCallRequest] = []
        async for event in provider.stream(provider_request):
            if isinstance(event, TextDelta):
                if event.text:
                    text_parts.append(event.text)
                    yield event
            elif isinstance(event, ToolCallRequest):
                calls.append(event)
            elif isinstance(event, Usage):
                input_tokens += event.input_tokens
                output_tokens += event.output_tokens
        if not calls:
            break
        normalized = [
            ToolCallRequest(id=call.id or new_call_id(), name=call.name, arguments=call.arguments)
            for call in calls
        ]
        turns.append(Turn(role="assistant", content="".join(text_parts), tool_calls=normalized))
        for call in normalized:
            envelope = {"id": call.id, "name": call.name, "arguments": call.arguments, "result": None,
                        "status": "running"}
            yield ToolCallUpdate(dict(envelope))
            status, result = await run_tool(request, call.name, call.arguments)
            envelope.update(result=result, status=status)
            yield ToolCallUpdate(dict(envelope))
            turns.append(
                Turn(
                    role="tool",
                    content=json.dumps(result, ensure_ascii=False, default=str),
                    tool_call_id=call.id,
                    tool_name=call.name,
                )
            )
    yield Usage(input_tokens=input_tokens, output_tokens=output_tokens)
