"""The Anthropic provider: Messages API streaming through the official `anthropic` SDK.

Configured by ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL (Django settings first, then the environment),
TENEX_LLM_MODEL, TENEX_LLM_TIMEOUT_SECONDS and TENEX_LLM_MAX_RETRIES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from agents.providers.base import (
    OpenResponse,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    SDKStreamingProvider,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    Turn,
    Usage,
    decode_tool_arguments,
    error_code_for,
    sse_json,
)

DEFAULT_MODEL = "claude-haiku-4-5"


def _content_blocks(turn: Turn) -> list[dict[str, Any]]:
    if turn.role == "tool":
        return [{"type": "tool_result", "tool_use_id": turn.tool_call_id or "", "content": turn.content}]
    # The API rejects empty text blocks; an assistant turn that only called tools has none.
    blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.content}] if turn.content.strip() else []
    if turn.role == "assistant":
        blocks += [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in turn.tool_calls
        ]
    return blocks


def message_params(turns: list[Turn]) -> list[dict[str, Any]]:
    """The Messages API `messages`: tool results become `tool_result` blocks of a user message.

    Consecutive turns of one role (several tool results in a row) share one message, as the API
    wants every result of an assistant's tool calls in the single user message that follows it.
    """
    messages: list[dict[str, Any]] = []
    for turn in turns:
        role = "user" if turn.role == "tool" else turn.role
        blocks = _content_blocks(turn)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def tool_params(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs as Messages API client tools."""
    return [{"name": tool.name, "description": tool.description, "input_schema": tool.parameters} for tool in tools]


def _input_tokens(usage: dict[str, Any]) -> int | None:
    """All input tokens of a usage report, cached ones included; None when it carries no input count."""
    if usage.get("input_tokens") is None:
        return None
    return sum(
        usage.get(name) or 0 for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class _ToolUse:
    id: str
    name: str
    initial_input: Any
    fragments: list[str] = field(default_factory=list)

    def request(self) -> ToolCallRequest:
        raw = "".join(self.fragments)
        if raw or not isinstance(self.initial_input, dict):
            arguments = decode_tool_arguments(raw, self.name)
        else:
            arguments = self.initial_input
        return ToolCallRequest(id=self.id, name=self.name, arguments=arguments)


class AnthropicProvider(SDKStreamingProvider):
    """Streams replies from `/v1/messages` through the official SDK's AsyncAnthropic."""

    name = "anthropic"
    vendor = "the Anthropic API"
    key_setting = "ANTHROPIC_API_KEY"
    url_setting = "ANTHROPIC_BASE_URL"
    default_model = DEFAULT_MODEL
    client_class = anthropic.AsyncAnthropic
    timeout_class = anthropic.Timeout
    # The SDK does not wrap network errors raised while the body streams, hence the httpx2 classes.
    timeout_errors = (anthropic.APITimeoutError, httpx2.TimeoutException)
    connection_errors = (anthropic.APIConnectionError, httpx2.TransportError)

    def request_params(self, request: ProviderRequest) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for `request`."""
        params: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_output_tokens,
            "messages": message_params(request.turns),
            "stream": True,
        }
        if request.system:
            params["system"] = request.system
        if request.tools:
            params["tools"] = tool_params(request.tools)
        return params

    async def open_stream(self, request: ProviderRequest) -> OpenResponse:
        # The raw response, read as plain JSON events (`events`): the SDK's typed stream builds a
        # model object for every event, which cost more CPU per word than everything else a reply does.
        return await OpenResponse.enter(
            self.client().messages.with_streaming_response.create(**self.request_params(request))
        )

    def api_error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code if exc.status_code >= 400 else None
            message = f"Anthropic API ({exc.type or exc.status_code}): {exc.api_message or exc.message}"
            return ProviderError(error_code_for(status, exc.type), message)
        if isinstance(exc, anthropic.AnthropicError) and not isinstance(exc, anthropic.APIError):
            return ProviderError("provider_not_configured", f"Anthropic client: {exc}")
        return ProviderError("provider_error", f"Unreadable reply from {self.vendor} ({type(exc).__name__}).")

    async def events(self, response: OpenResponse) -> AsyncIterator[ProviderEvent]:
        """TextDelta per text_delta, a ToolCallRequest per finished tool_use block, then Usage."""
        tool_uses: dict[int, _ToolUse] = {}
        input_tokens = output_tokens = 0
        stopped = False
        async for event in sse_json(response.raw):
            kind = event.get("type")
            index = event.get("index")
            if kind == "message_start":
                usage = _object(_object(event.get("message")).get("usage"))
                input_tokens = _input_tokens(usage) or 0
                output_tokens = usage.get("output_tokens") or 0
            elif kind == "content_block_start":
                block = _object(event.get("content_block"))
                if block.get("type") == "tool_use":
                    tool_uses[index] = _ToolUse(
                        str(block.get("id") or ""), str(block.get("name") or ""), block.get("input")
                    )
            elif kind == "content_block_delta":
                delta = _object(event.get("delta"))
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield TextDelta(str(delta["text"]))
                elif delta.get("type") == "input_json_delta" and index in tool_uses:
                    tool_uses[index].fragments.append(str(delta.get("partial_json") or ""))
            elif kind == "content_block_stop" and index in tool_uses:
                yield tool_uses.pop(index).request()
            elif kind == "message_delta":
                # message_delta usage is cumulative for the whole message.
                usage = _object(event.get("usage"))
                input_tokens = _input_tokens(usage) or input_tokens
                output_tokens = usage.get("output_tokens") or output_tokens
            elif kind == "message_stop":
                stopped = True
            elif kind == "error":  # the API failed after the stream started (e.g. overloaded)
                error = _object(event.get("error"))
                error_type = error.get("type") if isinstance(error.get("type"), str) else None
                message = error.get("message") if isinstance(error.get("message"), str) else "An error occurred."
                raise ProviderError(
                    error_code_for(None, error_type), f"Anthropic API ({error_type or 'error'}): {message}"
                )
        if not stopped:
            raise ProviderError("provider_error", "The Anthropic stream ended before the message stopped.")
        yield Usage(input_tokens=input_tokens, output_tokens=output_tokens)
