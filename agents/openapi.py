"""OpenAPI for the agents API: what the schema cannot learn from the serializers alone."""

from __future__ import annotations

from agents.tools import registered_tools

AGENT_BODIES = ("AgentCreateSchemaRequest", "PatchedAgentCreateSchemaRequest")


def postprocess(result: dict, generator, request, public) -> dict:
    """SPECTACULAR_SETTINGS postprocessing hook: `tools` names only registered tools."""
    schemas = result.get("components", {}).get("schemas", {})
    for name in AGENT_BODIES:
        tools = schemas.get(name, {}).get("properties", {}).get("tools")
        if tools is not None:
            tools["items"] = {"type": "string", "enum": sorted(registered_tools())}
    return result
