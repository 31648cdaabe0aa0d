"""The provider interface: a request in, an async stream of text deltas, tool calls and usage out.

A provider never runs tools itself. When it asks for tools, the runtime (agents.runtime) runs them,
appends the results to the conversation and calls the provider again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing, suppress
from dataclasses import dataclass, field
from typing import (
    Any,
    ClassVar,
    Literal,
    Protocol,
)


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


# Between a user turn's text and each attachment's content (`chat.prompt.render_user_turn`).
ATTACHMENT_MARKER = "\n\n--- Attachment: "


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


ProviderEvent = TextDelta | ToolCallRequest | Usage


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


# --- Shared by the HTTP providers (openai, anthropic) ------------------------------------------

logger = logging.getLogger(__name__)

# ProviderError codes: "provider_not_configured", "provider_auth", "provider_quota", "rate_limited",
# "provider_timeout", "provider_unavailable", "provider_bad_request" and "provider_error" (anything
# else, including broken streams).
_ERROR_TYPE_CODES = {
    "authentication_error": "provider_auth",
    "permission_error": "provider_auth",
    "billing_error": "provider_quota",
    "insufficient_quota": "provider_quota",
    "rate_limit_error": "rate_limited",
    "rate_limit_exceeded": "rate_limited",
    "overloaded_error": "provider_unavailable",
    "timeout_error": "provider_timeout",
}
_STATUS_CODES = {
    401: "provider_auth",
    403: "provider_auth",
    408: "provider_timeout",
    429: "rate_limited",
    502: "provider_unavailable",
    503: "provider_unavailable",
    504: "provider_timeout",
    529: "provider_unavailable",
}


def error_code_for(status: int | None, *error_types: str | None) -> str:
    """The ProviderError code for a vendor error: its first known error type, else its HTTP status."""
    for error_type in error_types:
        if error_type in _ERROR_TYPE_CODES:
            return _ERROR_TYPE_CODES[error_type]
    if status in _STATUS_CODES:
        return _STATUS_CODES[status]
    if status is not None and 400 <= status < 500:
        return "provider_bad_request"
    return "provider_error"


def provider_setting(name: str) -> str:
    """A provider setting from Django settings when set there and non-empty, else from the environment."""
    from django.conf import settings

    value = getattr(settings, name, None)
    return str(value) if value not in (None, "") else os.environ.get(name, "")


def decode_tool_arguments(raw: str, tool_name: str) -> dict[str, Any]:
    """The JSON object a model streamed as a tool call's arguments; {} (logged) when it is not one.

    With {} the tool's own argument validation fails and the model sees that result, instead of
    the whole reply failing over one malformed call.
    """
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value
    logger.warning(
        "tool call %r: arguments are not a JSON object (%d chars); using {}", tool_name, len(raw)
    )
    return {}


class OpenResponse:
    """An SDK's raw streaming response whose headers have arrived (`raw`: its AsyncAPIResponse, from
    `with_streaming_response`); leaving `async with` closes it."""

    def __init__(self, manager: AbstractAsyncContextManager[Any], raw: Any) -> None:
        self._manager = manager
        self.raw = raw

    @classmethod
    async def enter(cls, manager: AbstractAsyncContextManager[Any]) -> OpenResponse:
        """Send the request (the SDK raises its own errors for a failed one, after its retries)."""
        return cls(manager, await manager.__aenter__())

    async def __aenter__(self) -> OpenResponse:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._manager.__aexit__(*exc_info)


# After a stream's last event, how long the rest of its body (normally just its end) may take to
# arrive: reading it to the end lets the connection serve the next reply.
DRAIN_SECONDS = 1.0


async def sse_json(response: Any, *, done: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """The JSON object of each Server-Sent Event of a raw SDK response (its data lines joined), up
    to a `done` data payload; a payload that is not a JSON object is a ProviderError."""
    lines = aiter(response.iter_lines())
    data: list[str] = []
    async for line in lines:
        if line:
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)
            continue  # `event:`, `id:`, `retry:` and comments: the JSON says what it is
        if not data:
            continue
        payload, data = "\n".join(data), []
        if payload == done:
            with suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    async for _rest in lines:
                        pass
            return
        try:
            decoded = json.loads(payload)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise ProviderError("provider_error", "The provider sent an event that is not a JSON object.")
        yield decoded


class SDKStreamingProvider:
    """The frame of a provider built on a vendor SDK: configuration, a lazily made client, and a stream
    that closes its HTTP response however it ends and lets only ProviderError escape."""

    name: ClassVar[str]
    vendor: ClassVar[str]  # how messages name the API, e.g. "the Anthropic API"
    key_setting: ClassVar[str]
    url_setting: ClassVar[str]
    default_model: ClassVar[str]
    client_class: ClassVar[type]  # the SDK's async client
    timeout_class: ClassVar[type]  # the SDK's Timeout
    timeout_errors: ClassVar[tuple[type[Exception], ...]]
    connection_errors: ClassVar[tuple[type[Exception], ...]]
    default_timeout_seconds = 60.0
    max_connect_seconds = 10.0
    default_max_retries = 2

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        client: Any = None,
    ) -> None:
        from django.conf import settings

        self.base_url = base_url or provider_setting(self.url_setting) or None
        self.api_key = api_key or provider_setting(self.key_setting)
        self.model = model or settings.TENEX_LLM_MODEL or self.default_model
        self.timeout = float(timeout or getattr(settings, "TENEX_LLM_TIMEOUT_SECONDS", self.default_timeout_seconds))
        if max_retries is None:
            max_retries = getattr(settings, "TENEX_LLM_MAX_RETRIES", self.default_max_retries)
        self.max_retries = max_retries
        self._client = client

    def client(self) -> Any:
        """The SDK client, made on first use (its connection pool then belongs to that event loop)."""
        if self._client is None:
            if not self.api_key:
                raise ProviderError("provider_not_configured", f"{self.key_setting} is not set.")
            # `timeout` bounds each wait (connect, each read), so a long stream is fine while it moves.
            self._client = self.client_class(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout_class(self.timeout, connect=min(self.timeout, self.max_connect_seconds)),
                max_retries=self.max_retries,
            )
        return self._client

    async def open_stream(self, request: ProviderRequest) -> AbstractAsyncContextManager[Any]:
        """Send the request; return the SDK's stream once the response headers have arrived."""
        raise NotImplementedError

    def events(self, response: Any) -> AsyncIterator[ProviderEvent]:
        """The ProviderEvents of an open SDK stream."""
        raise NotImplementedError

    def api_error(self, exc: Exception) -> ProviderError:
        """A vendor SDK exception other than a timeout or a connection failure as a ProviderError."""
        raise NotImplementedError

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Yield the vendor's events as ProviderEvents; every failure arrives as a ProviderError."""
        started = False
        try:
            response = await self.open_stream(request)
            started = True
            # Leaving this block for any reason (end, error, aclose, cancel) closes the HTTP response.
            async with response, aclosing(self.events(response)) as events:
                async for event in events:
                    yield event
        except ProviderError:
            raise
        except Exception as exc:
            raise self.provider_error(exc, started=started) from exc

    def provider_error(self, exc: Exception, *, started: bool) -> ProviderError:
        """Any failure while calling or reading the API as a ProviderError; `started`: headers had arrived."""
        if isinstance(exc, self.timeout_errors):
            return ProviderError("provider_timeout", f"No answer from {self.vendor} in time.")
        if isinstance(exc, self.connection_errors):
            if started:
                return ProviderError("provider_error", f"The connection to {self.vendor} broke mid-reply.")
            return ProviderError("provider_unavailable", f"Cannot reach {self.vendor}: {exc}")
        return self.api_error(exc)
