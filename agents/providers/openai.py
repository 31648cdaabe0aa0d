"""The OpenAI provider: Chat Completions streaming against any OpenAI-compatible server.

Configured by OPENAI_BASE_URL and OPENAI_API_KEY (Django settings first, then the environment),
TENEX_LLM_MODEL, TENEX_LLM_TIMEOUT_SECONDS and TENEX_LLM_MAX_RETRIES.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

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

DEFAULT_MODEL = "gpt-4o-mini"
# api.openai.com rejects `max_tokens` for its newer models; other compatible servers mostly know only it.
OPENAI_HOST = "api.openai.com"


def chat_messages(system: str, turns: list[Turn]) -> list[dict[str, Any]]:
    """The Chat Completions `messages`: the system prompt first, tool results as `tool` messages."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for turn in turns:
        if turn.role == "tool":
            messages.append({"role": "tool", "tool_call_id": turn.tool_call_id or "", "content": turn.content})
        elif turn.role == "assistant" and turn.tool_calls:
            messages.append(
                {
                    "role": "assistant",
                    "content": turn.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                        for call in turn.tool_calls
                    ],
                }
            )
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return messages


def function_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs as Chat Completions function tools."""
    return [
        {
            "type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
        }
        for tool in tools
    ]


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Joins streamed tool-call fragments (keyed by `index`) into whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}

    def add(self, fragment: dict[str, Any]) -> None:
        """One `delta.tool_calls` item, as the chunk's JSON has it."""
        index = fragment.get("index")
        # A server that omits `index` sends each call whole, so each such fragment is a call of its own.
        index = index if isinstance(index, int) else 1_000_000 + len(self._calls)
        call = self._calls.setdefault(index, _PartialCall())
        if fragment.get("id"):
            call.id = str(fragment["id"])
        function = fragment.get("function")
        if isinstance(function, dict):
            call.name += str(function.get("name") or "")
            call.arguments.append(str(function.get("arguments") or ""))

    def complete(self) -> list[ToolCallRequest]:
        """The calls gathered so far, in index order; the assembler is empty afterwards."""
        calls = [self._calls[index] for index in sorted(self._calls)]
        self._calls.clear()
        return [
            ToolCallRequest(
                id=call.id, name=call.name, arguments=decode_tool_arguments("".join(call.arguments), call.name)
            )
            for call in calls
        ]


class OpenAIProvider(SDKStreamingProvider):
    """Streams replies from `/chat/completions` through the official SDK's AsyncOpenAI."""

    name = "openai"
    vendor = "the OpenAI-compatible API"
    key_setting = "OPENAI_API_KEY"
    url_setting = "OPENAI_BASE_URL"
    default_model = DEFAULT_MODEL
    client_class = openai.AsyncOpenAI
    timeout_class = openai.Timeout
    timeout_errors = (openai.APITimeoutError, httpx2.TimeoutException)
    connection_errors = (openai.APIConnectionError, httpx2.TransportError)

    def request_params(self, request: ProviderRequest, client: openai.AsyncOpenAI) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for `request`."""
        limit_key = "max_completion_tokens" if client.base_url.host == OPENAI_HOST else "max_tokens"
        params: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": chat_messages(request.system, request.turns),
            "stream": True,
            "stream_options": {"include_usage": True},
            limit_key: request.max_output_tokens,
        }
        if request.tools:
            params["tools"] = function_tools(request.tools)
        return params

    async def open_stream(self, request: ProviderRequest) -> OpenResponse:
        # The raw response, read as plain JSON chunks (`events`): the SDK's typed stream builds a
        # model object for every chunk, which cost more CPU per word than everything else a reply does.
        client = self.client()
        body = self.request_params(request, client)
        # `create` walks its keyword arguments against the SDK's request types before sending them,
        # every history message against a union of six TypedDicts, on both rounds of a reply. The
        # body is plain JSON already, so it goes as `extra_body`, which the SDK sends as it is, over
        # its own arguments (the provider contract tests check the exact body the server receives).
        return await OpenResponse.enter(client.chat.completions.with_streaming_response.create(
            model=body["model"], messages=[], stream=True, extra_body=body
        ))

    def api_error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, openai.APIStatusError):
            code = error_code_for(exc.status_code, exc.code, exc.type)
            return ProviderError(code, f"OpenAI-compatible API: {exc.message}")
        if isinstance(exc, openai.APIError):  # an error chunk in the middle of the stream
            return ProviderError(error_code_for(None, exc.code, exc.type), f"OpenAI-compatible API: {exc.message}")
        if isinstance(exc, openai.OpenAIError):
            return ProviderError("provider_not_configured", f"OpenAI client: {exc}")
        return ProviderError("provider_error", f"Unreadable reply from {self.vendor} ({type(exc).__name__}).")

    async def events(self, response: OpenResponse) -> AsyncIterator[ProviderEvent]:
        """TextDelta per content delta, each ToolCallRequest once its choice finishes, then Usage."""
        calls = ToolCallAssembler()
        usage = Usage(input_tokens=0, output_tokens=0)  # servers that ignore include_usage report none
        finished = False
        async for chunk in sse_json(response.raw, done="[DONE]"):
            error = chunk.get("error")
            if error:  # an error chunk in the middle of the stream
                error = error if isinstance(error, dict) else {}
                message = error.get("message") if isinstance(error.get("message"), str) else "An error occurred."
                code = error_code_for(None, error.get("code"), error.get("type"))
                raise ProviderError(code, f"OpenAI-compatible API: {message}")
            reported = chunk.get("usage")
            if isinstance(reported, dict):
                usage = Usage(reported.get("prompt_tokens") or 0, reported.get("completion_tokens") or 0)
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    for text in (delta.get("content"), delta.get("refusal")):
                        if text:
                            yield TextDelta(str(text))
                    for fragment in delta.get("tool_calls") or ():
                        calls.add(fragment)
                if choice.get("finish_reason"):
                    finished = True
                    for call in calls.complete():
                        yield call
        if not finished:
            raise ProviderError("provider_error", "The OpenAI-compatible stream ended before the reply finished.")
        yield usage
