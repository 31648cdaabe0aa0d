"""The provider interface: a request in, an async stream of text deltas, tool calls and usage out.

A provider never runs tools itself. When it asks for tools, the runtime (agents.runtime) runs them,
appends the results to the conversation and calls the provider again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Protocol, Union


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(frozen=True)
class ToolCallRequest:
    """The model asks to run a tool. `arguments` is the decoded JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Turn:
    """One conversation entry sent to a provider.

    role "user" / "assistant": text `content`; an assistant turn may carry `tool_calls` it made.
    role "tool": the result of the call `tool_call_id`, as JSON-able `content` text.
    """

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    tool_call_id: str | None = None
    tool_name: str | None = None


@dataclass
class ProviderRequest:
    system: str
    turns: list[Turn]
    tools: list[ToolSpec] = field(default_factory=list)
    model: str = ""
    max_output_tokens: int = 1024


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


ProviderEvent = Union[TextDelta, ToolCallRequest, Usage]


class ProviderError(Exception):
    """The provider failed (network, API error, bad stream). `code` goes into the message's error."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Provider(Protocol):
    name: str

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Yield TextDelta as text arrives, a ToolCallRequest per complete tool call, Usage once."""
        ...
