"""The tool registry shared by chat and agents, and the built-in tools.

Adding a connector (a new tool):
1. Write an object with `name`, `description`, `parameters` (the JSON Schema of its arguments
   object) and a synchronous `run(context, arguments)` returning JSON-able data. Raise `ToolError`
   with a readable message when the call cannot be done; the model sees that message.
2. Add its dotted path to `TENEX_TOOLS` (settings or the environment), e.g.
   `TENEX_TOOLS=agents.tools.search_knowledge,agents.tools.run_agent,crm.tools.lookup_account`.

`run` is called in a worker thread inside `tenant_context(context.scope.workspace_id)`, with its
arguments already validated against `parameters`; reach tenant rows only through
`Model.objects.for_scope(context.scope)`. Credentials a connector needs come from settings, never
from the arguments, and never go into its result. A connector that waits on a slow service sets
`manages_transactions = True` and opens `tenant_context` itself around its database work only, so
no transaction or pooled connection is held while it waits (see `RunAgentTool`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils.module_loading import import_string
from jsonschema.validators import Draft202012Validator, validator_for
from referencing.exceptions import Unresolvable

from agents.providers.base import ToolSpec
from tenex.outages import log_failure
from workspaces.tenancy import Scope, tenant_context

logger = logging.getLogger(__name__)

MAX_ERRORS_REPORTED = 5
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class ToolContext:
    scope: Scope  # the workspace and the acting user
    thread_id: str | None = None
    # The thread's pinned knowledge documents; search_knowledge ranks their passages first.
    knowledge_document_ids: tuple[str, ...] = ()


class ToolError(Exception):
    """A tool call that failed; str(exc) is a readable message fed back to the model."""


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object

    def run(self, context: ToolContext, arguments: dict) -> dict | list | str: ...


# --- JSON Schema helpers ----------------------------------------------------------------------
def _shorten(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def json_schema_errors(schema: dict, instance: Any, *, label: str) -> list[str]:
    """Readable messages for every way `instance` breaks `schema`, e.g. "input.email: 5 is not of type 'string'"."""
    cls = validator_for(schema, default=Draft202012Validator)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    try:
        errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    except Unresolvable as exc:  # a $ref that points nowhere
        return [_shorten(f"{label}: the schema cannot be applied ({exc})")]
    messages = []
    for error in errors[:MAX_ERRORS_REPORTED]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        messages.append(_shorten(f"{label}{path}: {error.message}"))
    if len(errors) > MAX_ERRORS_REPORTED:
        messages.append(f"(and {len(errors) - MAX_ERRORS_REPORTED} more)")
    return messages


# --- the registry -----------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for path in paths:
        tool = import_string(path)
        if not isinstance(tool, Tool):
            raise TypeError(f"{path} is not a tool (it needs name, description, parameters and run)")
        if tool.name in tools:
            raise ValueError(f"two tools are named {tool.name!r} in TENEX_TOOLS")
        tools[tool.name] = tool
    return tools


def registered_tools() -> dict[str, Tool]:
    """The tools named by settings.TENEX_TOOLS, by name."""
    return dict(_load(tuple(settings.TENEX_TOOLS)))


def get_tool(name: str) -> Tool:
    """The registered tool called `name`; KeyError if there is none."""
    return registered_tools()[name]


def tool_specs(names: list[str] | None = None) -> list[ToolSpec]:
    """Specs for the provider: every registered tool, or those of `names` that are registered
    (an agent may still list a tool that has since been removed from TENEX_TOOLS)."""
    tools = registered_tools()
    chosen = list(tools) if names is None else [n for n in dict.fromkeys(names) if n in tools]
    return [ToolSpec(name=n, description=tools[n].description, parameters=tools[n].parameters) for n in chosen]


def run_tool(context: ToolContext, name: str, arguments: dict) -> tuple[str, object]:
    """Run one tool call: ("complete", result) or ("failed", {"error": "readable message"}).

    Never raises for an unknown tool, bad arguments or a failing tool. The call runs in its own
    savepoint, so a tool that fails halfway leaves the caller's transaction usable.
    """
    tool = registered_tools().get(name)
    if tool is None:
        return "failed", {"error": f"There is no tool named {_shorten(repr(name))}."}
    if not isinstance(arguments, dict):
        return "failed", {"error": "The arguments must be a JSON object."}
    problems = json_schema_errors(tool.parameters, arguments, label="arguments")
    if problems:
        return "failed", {"error": "Invalid arguments: " + "; ".join(problems)}
    try:
        if getattr(tool, "manages_transactions", False):
            result = tool.run(context, arguments)
        else:
            with tenant_context(context.scope.workspace_id):
                result = tool.run(context, arguments)
        json.dumps(result)  # a result must be JSON-able to be stored and sent to the model
    except ToolError as exc:
        return "failed", {"error": str(exc) or f"{name} failed."}
    except Exception as exc:
        log_failure(logger, "tool %s failed", name, exc=exc, level=logging.ERROR)
        return "failed", {"error": f"{name} failed unexpectedly."}
    return "complete", result


# --- built-in tools ---------------------------------------------------------------------------
class SearchKnowledgeTool:
    name = "search_knowledge"
    description = (
        "Search the workspace's knowledge documents. Returns the most relevant passages, best first, "
        "each with its document's id, title and source URL. Quote passages rather than guessing."
    )
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "What to look for."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
        },
        "required": ["query"],
        "additionalProperties": False,
    }

    def run(self, context: ToolContext, arguments: dict) -> dict:
        from knowledge.selectors import passage_search

        query = arguments["query"]
        if "\x00" in query:
            raise ToolError("The query must not contain NUL characters.")
        results = passage_search(
            scope=context.scope,
            query=query,
            limit=arguments.get("limit", 5),
            pinned_document_ids=context.knowledge_document_ids,
        )
        return {"query": query, "results": results}


class RunAgentTool:
    name = "run_agent"
    description = (
        "Run one of the workspace's agents once on a typed input and return its answer. Name the agent "
        "by `agent_id` (agt_...) or by `agent` (its slug); `input` must match the agent's input schema."
    )
    parameters = {
        "type": "object",
        "properties": {
            "agent_id": {"type": "string", "maxLength": 64, "description": "The agent's id, agt_..."},
            "agent": {"type": "string", "maxLength": 100, "description": "The agent's slug."},
            "input": {"type": "object", "description": "The agent's input, matching its input_schema."},
        },
        "additionalProperties": False,
    }

    def __init__(self, provider_factory=None):
        # The provider the run uses; the configured one unless a caller (a test) supplies another.
        self.provider_factory = provider_factory

    # The agent's provider call may take a minute: no transaction (nor pooled connection) is held
    # for it. `run_tool` leaves the scope to this tool, which reads inside it, then calls out.
    manages_transactions = True

    def run(self, context: ToolContext, arguments: dict) -> dict:
        from agents.runs import agent_find, agent_run_answer, agent_run_request

        with tenant_context(context.scope.workspace_id):
            agent = agent_find(scope=context.scope, agent_id=arguments.get("agent_id"), slug=arguments.get("agent"))
            request = agent_run_request(scope=context.scope, agent=agent, input=arguments.get("input", {}))
        if not connection.in_atomic_block:  # (a caller's transaction must stay as it is)
            close_old_connections()  # back to the pool while the provider answers
        provider = self.provider_factory() if self.provider_factory else None
        return agent_run_answer(agent=agent, request=request, provider=provider)


search_knowledge = SearchKnowledgeTool()
run_agent = RunAgentTool()
