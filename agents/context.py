"""The system context a thread answers with, resolved once and snapshotted on the thread."""

from __future__ import annotations

from typing import TypedDict

from agents.models import Agent


class AgentSnapshot(TypedDict):
    id: str
    version: int
    name: str
    instructions: str
    tools: list[str]
    input_schema: dict


class BrandSnapshot(TypedDict):
    version: int
    name: str
    description: str
    voice: str
    facts: list


class ThreadContext(TypedDict, total=False):
    agent: AgentSnapshot | None
    brand: BrandSnapshot | None


def agent_snapshot(agent: Agent | None) -> AgentSnapshot | None:
    if agent is None:
        return None
    return {
        "id": agent.id,
        "version": agent.version,
        "name": agent.name,
        "instructions": agent.instructions,
        "tools": list(agent.tools or []),
        "input_schema": agent.input_schema or {},
    }


def brand_snapshot(workspace_id: str) -> BrandSnapshot | None:
    from knowledge.models import BrandProfile

    brand = BrandProfile.objects.for_workspace(workspace_id).first()
    if brand is None:
        return None
    return {
        "version": brand.version,
        "name": brand.name,
        "description": brand.description,
        "voice": brand.voice,
        "facts": list(brand.facts or []),
    }


def build_thread_context(*, workspace_id: str, agent: Agent | None) -> ThreadContext:
    return {"agent": agent_snapshot(agent), "brand": brand_snapshot(workspace_id)}
