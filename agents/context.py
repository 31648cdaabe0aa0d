"""The system context a thread answers with, resolved once and snapshotted on the thread.

`build_thread_context` resolves it (agent version, brand profile version) when a thread is created
or refreshed; `system_prompt_for` renders the system prompt from that snapshot on every turn, so a
resumed thread answers with exactly the context it was created with.
"""

from __future__ import annotations

from typing import TypedDict

from agents.models import Agent


class AgentSnapshot(TypedDict):
    id: str
    version: int
    name: str
    slug: str
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
        "slug": agent.slug,
        "instructions": agent.instructions,
        "tools": list(agent.tools or []),
        "input_schema": agent.input_schema or {},
    }


def brand_snapshot(workspace_id: str) -> BrandSnapshot | None:
    """The brand profile as it is now, with its version (BrandProfileVersion keeps that version)."""
    from knowledge.models import BrandProfile

    brand = BrandProfile.objects.for_workspace(workspace_id).first()
    if brand is None or brand.version == 0:
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


def _brand_section(brand: BrandSnapshot) -> str:
    lines = []
    if brand.get("name"):
        lines.append(f"You speak for {brand['name']}.")
    if brand.get("description"):
        lines.append(brand["description"])
    if brand.get("voice"):
        lines.append(f"Voice: {brand['voice']}")
    facts = [str(fact) for fact in brand.get("facts") or [] if str(fact).strip()]
    if facts:
        lines.append("Facts:\n" + "\n".join(f"- {fact}" for fact in facts))
    return "\n".join(lines)


def system_prompt_for(thread_context: dict, system_prompt: str) -> str:
    """The full system prompt: the agent's instructions, the thread's system prompt, then the brand
    profile (name, description, voice, facts). Empty parts are left out."""
    context = thread_context or {}
    agent = context.get("agent") or {}
    brand = context.get("brand") or {}
    parts = [agent.get("instructions") or "", system_prompt or "", _brand_section(brand) if brand else ""]
    return "\n\n".join(part for part in parts if part.strip())
