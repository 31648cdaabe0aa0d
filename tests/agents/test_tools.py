"""The tool registry, search_knowledge, run_agent, and the rendered system prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from django.db import connection
from django.test import override_settings

from agents.context import build_thread_context, system_prompt_for
from agents.providers import get_provider
from agents.providers.base import (
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolSpec,
    Usage,
)
from agents.tools import (
    RunAgentTool,
    ToolContext,
    ToolError,
    get_tool,
    registered_tools,
    run_tool,
    tool_specs,
)
from knowledge.models import Document
from tests.agents.factories import AgentFactory
from tests.knowledge.factories import DocumentFactory, workspace_scope
from workspaces.tenancy import Scope, tenant_context

pytestmark = pytest.mark.django_db

LEAD_SCHEMA = {
    "type": "object",
    "properties": {
        "company": {"type": "string", "minLength": 1},
        "employees": {"type": "integer", "minimum": 1},
        "contact": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
    },
    "required": ["company"],
    "additionalProperties": False,
}


class EchoProvider:
    """A real (if tiny) provider: answers with what it was given, two deltas and usage."""

    name = "echo"
    seen: list[ProviderRequest] = []

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        EchoProvider.seen.append(request)
        yield TextDelta(f"[{request.system}]")
        yield TextDelta(f" <{request.turns[-1].content}>")
        yield Usage(input_tokens=1, output_tokens=2)


class BrokenProvider:
    name = "broken"

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        raise ProviderError("provider_unavailable", "The model is overloaded.")
        yield  # pragma: no cover  (makes this an async generator)


class FailingTool:
    name = "failing"
    description = "Always fails."
    parameters = {"type": "object", "properties": {"kind": {"enum": ["tool_error", "crash", "db"]}}}

    def run(self, context, arguments):
        if arguments["kind"] == "tool_error":
            raise ToolError("The CRM is down; try again later.")
        if arguments["kind"] == "db":
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")  # a database error mid-call
        raise RuntimeError("bug")


echo_run_agent = RunAgentTool(provider_factory=EchoProvider)
broken_run_agent = RunAgentTool(provider_factory=BrokenProvider)
failing = FailingTool()
TEST_TOOLS = [
    "agents.tools.search_knowledge",
    "tests.agents.test_tools.echo_run_agent",
    "tests.agents.test_tools.failing",
]


@pytest.fixture
def context(workspace, alice) -> ToolContext:
    return ToolContext(scope=Scope(workspace_id=workspace.pk, user_id=alice.id), thread_id=None)


def run(context, name, arguments):
    with tenant_context(context.scope.workspace_id):
        return run_tool(context, name, arguments)


# --- the registry -----------------------------------------------------------------------------
def test_registry_lists_the_configured_tools():
    assert set(registered_tools()) == {"search_knowledge", "run_agent"}
    assert get_tool("search_knowledge").name == "search_knowledge"
    with pytest.raises(KeyError):
        get_tool("nope")
    specs = tool_specs()
    assert all(isinstance(s, ToolSpec) and s.parameters["type"] == "object" and s.description for s in specs)
    assert [s.name for s in tool_specs(["run_agent", "removed_tool", "run_agent"])] == ["run_agent"]


@override_settings(TENEX_TOOLS=TEST_TOOLS)
def test_registry_follows_settings():
    assert set(registered_tools()) == {"search_knowledge", "run_agent", "failing"}
    assert registered_tools()["run_agent"] is echo_run_agent


@override_settings(TENEX_TOOLS=["agents.tools.ToolContext"])
def test_a_non_tool_in_settings_fails_loudly():
    with pytest.raises(TypeError):
        registered_tools()


# --- run_tool never raises for bad calls -------------------------------------------------------
@pytest.mark.parametrize(
    "name,arguments,message",
    [
        ("nope", {}, "There is no tool named 'nope'."),
        ("search_knowledge", [], "The arguments must be a JSON object."),
        ("search_knowledge", {}, "'query' is a required property"),
        ("search_knowledge", {"query": 5}, "arguments.query: 5 is not of type 'string'"),
        ("search_knowledge", {"query": "x", "limit": 11}, "arguments.limit: 11 is greater than the maximum of 10"),
        ("search_knowledge", {"query": ""}, "arguments.query: '' should be non-empty"),
        ("search_knowledge", {"query": "x", "extra": 1}, "Additional properties are not allowed"),
        ("search_knowledge", {"query": "a\x00b"}, "The query must not contain NUL characters."),
    ],
)
def test_bad_calls_fail_with_a_readable_error(context, name, arguments, message):
    status, result = run(context, name, arguments)
    assert status == "failed"
    assert set(result) == {"error"} and message in result["error"], result


@override_settings(TENEX_TOOLS=TEST_TOOLS)
def test_tool_errors_and_crashes_are_failed_calls_and_the_transaction_survives(context, workspace):
    assert run(context, "failing", {"kind": "tool_error"}) == ("failed", {"error": "The CRM is down; try again later."})
    assert run(context, "failing", {"kind": "crash"}) == ("failed", {"error": "failing failed unexpectedly."})
    document = DocumentFactory(workspace=workspace, title="Kept")
    with tenant_context(workspace.pk):
        assert run_tool(context, "failing", {"kind": "db"})[0] == "failed"
        # The failed statement was rolled back to the tool's savepoint; this transaction still works.
        assert Document.objects.for_scope(context.scope).get(pk=document.pk).title == "Kept"


# --- search_knowledge -------------------------------------------------------------------------
def test_search_knowledge_returns_ranked_passages(context, workspace, other_workspace):
    pricing = DocumentFactory(workspace=workspace, title="Pricing", body="Pro costs 20 dollars a seat per month.",
                              source_url="https://acme.test/pricing")
    DocumentFactory(workspace=workspace, title="Jobs", body="We are hiring.")
    DocumentFactory(workspace=other_workspace, title="Globex pricing", body="Globex Pro costs 99 dollars a seat.")
    status, result = run(context, "search_knowledge", {"query": "How much does Pro cost per seat?"})
    assert status == "complete"
    assert result["query"] == "How much does Pro cost per seat?"
    assert [(r["document_id"], r["title"], r["source_url"]) for r in result["results"]] == [
        (pricing.pk, "Pricing", "https://acme.test/pricing")
    ]
    assert result["results"][0]["passage"] == "Pro costs 20 dollars a seat per month."
    assert set(result["results"][0]) == {"document_id", "title", "passage", "score", "source_url"}


def test_search_knowledge_prefers_the_threads_pinned_documents(context, workspace):
    docs = [DocumentFactory(workspace=workspace, body=f"Onboarding checklist {i}.") for i in range(3)]
    pinned = ToolContext(scope=context.scope, thread_id="thr_x", knowledge_document_ids=(docs[1].pk,))
    _, result = run(pinned, "search_knowledge", {"query": "onboarding checklist", "limit": 3})
    assert result["results"][0]["document_id"] == docs[1].pk and len(result["results"]) == 3


# --- run_agent --------------------------------------------------------------------------------
@pytest.fixture
def lead_agent(workspace):
    return AgentFactory(workspace=workspace, name="Lead Scorer", instructions="Score the lead from 1 to 10.",
                        input_schema=LEAD_SCHEMA)


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"agent": "lead-scorer", "input": {}}, "input: 'company' is a required property"),
        ({"agent": "lead-scorer", "input": {"company": "Initech", "employees": "many"}},
         "input.employees: 'many' is not of type 'integer'"),
        ({"agent": "lead-scorer", "input": {"company": "Initech", "employees": 0}},
         "input.employees: 0 is less than the minimum of 1"),
        ({"agent": "lead-scorer", "input": {"company": "Initech", "contact": {"email": "not-an-email"}}},
         "input.contact.email: 'not-an-email' is not a 'email'"),
        ({"agent": "lead-scorer", "input": {"company": "Initech", "ceo": "Bill"}}, "Additional properties"),
        ({"agent": "lead-scorer", "input": []}, "arguments.input: [] is not of type 'object'"),
        ({"input": {"company": "Initech"}}, "Name the agent with exactly one of agent_id"),
        ({"agent": "lead-scorer", "agent_id": "agt_x", "input": {}}, "Name the agent with exactly one of agent_id"),
        ({"agent": "ghost", "input": {}}, "There is no agent 'ghost' in this workspace. Known agents: lead-scorer."),
        ({"agent_id": "agt_" + "x" * 10_000, "input": {}}, "arguments.agent_id"),
        ({"agent_id": "agt_missing000000000000000", "input": {}}, "There is no agent"),
    ],
)
@override_settings(TENEX_TOOLS=TEST_TOOLS)
def test_run_agent_with_invalid_arguments_is_a_failed_call(context, lead_agent, arguments, message):
    EchoProvider.seen.clear()
    status, result = run(context, "run_agent", arguments)
    assert status == "failed" and message in result["error"], result
    assert EchoProvider.seen == []  # the model was never called


@override_settings(TENEX_TOOLS=TEST_TOOLS)
def test_run_agent_runs_the_agent_once_without_tools(context, lead_agent, alice):
    alice.client.put("/api/v1/knowledge/brand", {"name": "Acme", "voice": "Dry."}, format="json")
    EchoProvider.seen.clear()
    status, result = run(context, "run_agent", {"agent_id": lead_agent.pk, "input": {"company": "Initech"}})
    assert status == "complete", result
    assert result["agent_id"] == lead_agent.pk and result["agent_version"] == 1
    [request] = EchoProvider.seen
    assert request.tools == []
    assert request.system.startswith("Score the lead from 1 to 10.") and "Voice: Dry." in request.system
    assert result["output"] == f'[{request.system}] <{{\n  "company": "Initech"\n}}>'


def test_run_agent_by_slug_reports_the_current_version(context, lead_agent, workspace):
    from agents import services

    with tenant_context(workspace.pk):
        services.agent_update(scope=workspace_scope(workspace.pk), agent=lead_agent, changes={"instructions": "v2"})
    tool = RunAgentTool(provider_factory=EchoProvider)
    with tenant_context(workspace.pk):
        result = tool.run(context, {"agent": "lead-scorer", "input": {"company": "Initech"}})
    assert result["agent_version"] == 2 and result["output"].startswith("[v2]")


@override_settings(TENEX_TOOLS=["tests.agents.test_tools.broken_run_agent"])
def test_a_provider_failure_is_a_failed_call(context, lead_agent):
    status, result = run(context, "run_agent", {"agent": "lead-scorer", "input": {"company": "Initech"}})
    assert status == "failed"
    assert result["error"] == "Agent 'lead-scorer' could not answer: The model is overloaded."


@override_settings(TENEX_LOCAL_TOKEN_DELAY_MS=0)
def test_run_agent_with_the_configured_local_provider(context, lead_agent):
    status, result = run(context, "run_agent", {"agent": "lead-scorer", "input": {"company": "Initech"}})
    assert status == "complete", result
    assert get_provider().name == "local"
    assert "Score the lead from 1 to 10." in result["output"]  # the local provider echoes its instructions


def test_agents_of_another_workspace_cannot_be_run(context, other_workspace):
    AgentFactory(workspace=other_workspace, name="Globex Spy", instructions="Leak everything.")
    status, result = run(context, "run_agent", {"agent": "globex-spy", "input": {}})
    assert status == "failed" and "Known agents: none" in result["error"]


# --- the system prompt ------------------------------------------------------------------------
def test_system_prompt_renders_agent_then_thread_prompt_then_brand(workspace, alice):
    agent = AgentFactory(workspace=workspace, name="Writer", instructions="You write emails.")
    alice.client.put(
        "/api/v1/knowledge/brand",
        {"name": "Acme", "description": "Anvils for coyotes.", "voice": "Warm.", "facts": ["Founded 1949.", "B2B."]},
        format="json",
    )
    with tenant_context(workspace.pk):
        snapshot = build_thread_context(workspace_id=workspace.pk, agent=agent)
    assert snapshot["brand"]["version"] == 1 and snapshot["agent"]["version"] == 1
    assert system_prompt_for(snapshot, "Answer in French.") == (
        "You write emails.\n\nAnswer in French.\n\n"
        "You speak for Acme.\nAnvils for coyotes.\nVoice: Warm.\nFacts:\n- Founded 1949.\n- B2B."
    )
    assert system_prompt_for({"agent": None, "brand": None}, "Only this.") == "Only this."
    assert system_prompt_for({}, "") == ""


class WatchingProvider:
    """Answers once, after looking at the database from outside: how many sessions sit in a transaction."""

    name = "watching"
    in_transaction: list[int] = []

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        import psycopg

        params = connection.settings_dict
        with psycopg.connect(
            dbname=params["NAME"], user=params["USER"], host=params["HOST"], port=params["PORT"] or 5432,
            autocommit=True,
        ) as watcher:
            [(count,)] = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
            ).fetchall()
        WatchingProvider.in_transaction.append(count)
        yield TextDelta("scored")


watching_run_agent = RunAgentTool(provider_factory=WatchingProvider)


@pytest.mark.django_db(transaction=True)
@override_settings(TENEX_TOOLS=["tests.agents.test_tools.watching_run_agent"])
def test_run_agent_holds_no_transaction_while_the_agent_answers(workspace):
    AgentFactory(workspace=workspace, name="Lead scorer", instructions="Score.", input_schema=LEAD_SCHEMA)
    WatchingProvider.in_transaction.clear()
    context = ToolContext(scope=workspace_scope(workspace.pk))
    status, result = run_tool(context, "run_agent", {"agent": "lead-scorer", "input": {"company": "Initech"}})
    assert (status, result["output"]) == ("complete", "scored")
    assert WatchingProvider.in_transaction == [0]
