"""One non-streamed run of an agent on a typed input: what the `run_agent` tool does."""

from __future__ import annotations

import json
from typing import TypedDict

from asgiref.sync import async_to_sync

from agents.context import build_thread_context, system_prompt_for
from agents.models import Agent
from agents.providers.base import (
    Provider,
    ProviderError,
    ProviderRequest,
    TextDelta,
    Turn,
)
from agents.tools import ToolError, json_schema_errors
from workspaces.ids import looks_like_id
from workspaces.tenancy import Scope

MAX_OUTPUT_CHARS = 20_000
KNOWN_AGENTS_LISTED = 20


class AgentRunResult(TypedDict):
    agent_id: str
    agent_version: int
    output: str


def agent_find(*, scope: Scope, agent_id: str | None = None, slug: str | None = None) -> Agent:
    """The agent named by id or slug in scope; a ToolError the model can act on otherwise."""
    if bool(agent_id) == bool(slug):
        raise ToolError("Name the agent with exactly one of agent_id (agt_...) or agent (its slug).")
    agents = Agent.objects.for_scope(scope)
    if agent_id:
        agent = agents.filter(pk=agent_id).first() if looks_like_id(agent_id, "agt") else None
    else:
        agent = agents.filter(slug=slug).first()
    if agent is None:
        known = list(agents.order_by("slug").values_list("slug", flat=True)[:KNOWN_AGENTS_LISTED])
        listing = ", ".join(known) if known else "none"
        raise ToolError(f"There is no agent {agent_id or slug!r} in this workspace. Known agents: {listing}.")
    return agent


async def _collect_text(provider: Provider, request: ProviderRequest) -> str:
    parts: list[str] = []
    async for event in provider.stream(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
    return "".join(parts)


def agent_run_request(*, scope: Scope, agent: Agent, input: dict) -> ProviderRequest:
    """Validate `input` against the agent's input_schema and build the run's one provider request.

    The system prompt is the agent's instructions followed by the brand profile; the input is the
    user turn, as JSON. Reads the database (the brand profile): call it inside the workspace scope.
    """
    problems = json_schema_errors(agent.input_schema or {}, input, label="input")
    if problems:
        raise ToolError(f"The input does not match the input schema of agent {agent.slug!r}: " + "; ".join(problems))
    context = build_thread_context(workspace_id=scope.workspace_id, agent=agent)
    return ProviderRequest(
        system=system_prompt_for(context, ""),
        turns=[Turn(role="user", content=json.dumps(input, ensure_ascii=False, indent=2))],
        tools=[],  # no tools: an agent run never dispatches further runs
    )


def agent_run_answer(*, agent: Agent, request: ProviderRequest, provider: Provider | None = None) -> AgentRunResult:
    """Run the agent once on a prepared request. No database work: call it outside any transaction,
    from a worker thread (not from an event loop), since the provider may take a minute."""
    if provider is None:
        from agents.providers import get_provider

        provider = get_provider()
    try:
        output = async_to_sync(_collect_text)(provider, request)
    except ProviderError as exc:
        raise ToolError(f"Agent {agent.slug!r} could not answer: {exc.message}") from exc
    return {"agent_id": agent.id, "agent_version": agent.version, "output": output[:MAX_OUTPUT_CHARS]}


def agent_run(*, scope: Scope, agent: Agent, input: dict, provider: Provider | None = None) -> AgentRunResult:
    """Validate `input`, then run the agent once without tools (`agent_run_request` + `agent_run_answer`)."""
    request = agent_run_request(scope=scope, agent=agent, input=input)
    return agent_run_answer(agent=agent, request=request, provider=provider)
