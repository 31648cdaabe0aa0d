"""Provider tests against local servers speaking each vendor's wire format (see conftest.py).

`ProviderContract` holds what every HTTP provider must do whatever its vendor; each provider's test
module subclasses it as `Test…Contract`, naming its wire module and provider class.
"""

from __future__ import annotations

import asyncio
import time
from types import ModuleType
from typing import Any

import pytest

from agents.providers import get_provider
from agents.providers.base import (
    ProviderRequest,
    SDKStreamingProvider,
    TextDelta,
    ToolCallRequest,
    ToolSpec,
    Turn,
    Usage,
)
from tests.providers.conftest import consume

HELLO = ProviderRequest(system="You are terse.", turns=[Turn(role="user", content="Hi")])
SEARCH = ToolSpec(
    name="search_knowledge",
    description="Search the workspace's knowledge.",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def search_call(call_id: str, query: str) -> ToolCallRequest:
    return ToolCallRequest(id=call_id, name="search_knowledge", arguments={"query": query})


def search_result(call_id: str, content: str) -> Turn:
    return Turn(role="tool", content=content, tool_call_id=call_id, tool_name="search_knowledge")


# Two tool rounds: one call with no text, then two calls after some text, each answered by a result.
TOOL_ROUND_TRIP = ProviderRequest(
    system="Be kind.",
    turns=[
        Turn(role="user", content="Refunds?"),
        Turn(role="assistant", content="", tool_calls=[search_call("call_a", "refunds")]),
        search_result("call_a", '{"results": []}'),
        Turn(
            role="assistant",
            content="Looking further.",
            tool_calls=[search_call("call_b", "refund policy"), search_call("call_c", "returns")],
        ),
        search_result("call_b", '{"results": [1]}'),
        search_result("call_c", '{"results": [2]}'),
    ],
    tools=[SEARCH],
)


class ProviderContract:
    """Timeouts, broken streams, early stops and configuration, checked against one vendor's wire format."""

    wire: ModuleType  # PATH, MODEL, MALFORMED, text_reply, partial_text, error_body, api_key_of
    provider_class: type[SDKStreamingProvider]
    url_suffix = ""  # appended to the server's URL to make the SDK's base URL

    def make_provider(self, server_url: str, **overrides: Any) -> SDKStreamingProvider:
        options = {
            "base_url": server_url + self.url_suffix,
            "api_key": "sk-test",
            "model": self.wire.MODEL,
            "timeout": 5,
            "max_retries": 0,
        }
        return self.provider_class(**{**options, **overrides})

    @pytest.fixture
    def provider(self, fake_server) -> SDKStreamingProvider:
        return self.make_provider(fake_server.url)

    def expect_http_error(self, fake_server, provider, run_stream, status: int, body: dict, expected: str) -> None:
        """A vendor error response before any streaming becomes ProviderError(`expected`), with no retry."""
        fake_server.reply_json(self.wire.PATH, status, body)

        [outcome] = run_stream(provider, HELLO)

        assert outcome.events == []
        assert (outcome.error.code, status) == (expected, status)
        assert "Nope." in outcome.error.message
        assert len(fake_server.requests) == 1  # max_retries=0

    def expect_mid_stream_error(self, fake_server, provider, run_stream, error_step: bytes, expected: str) -> None:
        """An error after some text: the text was delivered, then ProviderError(`expected`)."""
        fake_server.reply_stream(self.wire.PATH, [*self.wire.partial_text(["Partial ", "answer"]), error_step])

        [outcome] = run_stream(provider, HELLO)

        assert outcome.text == "Partial answer"
        assert outcome.error.code == expected
        assert "It broke." in outcome.error.message

    def test_slow_first_token_still_streams(self, fake_server, provider, run_stream):
        fake_server.reply_stream(self.wire.PATH, [1.0, *self.wire.text_reply(["Finally", "."])])

        started = time.monotonic()
        [outcome] = run_stream(provider, HELLO)

        assert time.monotonic() - started >= 1.0
        assert outcome.error is None and outcome.text == "Finally."

    def test_silence_longer_than_the_timeout_is_provider_timeout(self, fake_server, run_stream):
        fake_server.reply_stream(self.wire.PATH, [3.0, *self.wire.text_reply(["Too late"])])
        provider = self.make_provider(fake_server.url, timeout=0.3)

        started = time.monotonic()
        [outcome] = run_stream(provider, HELLO)

        assert outcome.error.code == "provider_timeout"
        assert time.monotonic() - started < 2.5

    def test_unreachable_server_is_provider_unavailable(self, closed_port, run_stream):
        provider = self.make_provider(f"http://127.0.0.1:{closed_port}")

        [outcome] = run_stream(provider, HELLO)

        assert outcome.error.code == "provider_unavailable"

    def test_dropped_connection_mid_stream_is_a_provider_error(self, fake_server, provider, run_stream):
        fake_server.reply_stream(self.wire.PATH, self.wire.partial_text(["Partial ", "answer"]), ending="abort")

        [outcome] = run_stream(provider, HELLO)

        assert outcome.text == "Partial answer"
        assert outcome.error.code == "provider_error"
        assert "broke mid-reply" in outcome.error.message

    def test_stream_that_ends_without_finishing_is_a_provider_error(self, fake_server, provider, run_stream):
        fake_server.reply_stream(self.wire.PATH, self.wire.partial_text(["Partial"]))

        [outcome] = run_stream(provider, HELLO)

        assert outcome.text == "Partial"
        assert outcome.error.code == "provider_error"
        assert not outcome.of_type(Usage)

    def test_malformed_event_is_a_provider_error(self, fake_server, provider, run_stream):
        fake_server.reply_stream(self.wire.PATH, [*self.wire.partial_text(["Partial"]), self.wire.MALFORMED])

        [outcome] = run_stream(provider, HELLO)

        assert outcome.text == "Partial"
        assert outcome.error.code == "provider_error"

    @pytest.mark.parametrize("how", ["aclose", "cancel"])
    def test_stopping_early_closes_the_connection(self, fake_server, provider, stop_early, how):
        fake_server.reply_stream(self.wire.PATH, self.wire.partial_text(["First ", "second "]), ending="hold")

        seen, disconnected = stop_early(provider, HELLO, how)

        assert seen[0] == TextDelta("First ")
        assert disconnected, "the server never saw the client hang up"

    def test_replies_on_one_event_loop_share_one_client_and_its_connection(self, fake_server, settings, monkeypatch):
        setattr(settings, self.provider_class.key_setting, "sk-shared")
        monkeypatch.setenv(self.provider_class.url_setting, fake_server.url + self.url_suffix)
        for word in ("one", "two", "three"):
            fake_server.reply_stream(self.wire.PATH, self.wire.text_reply([word]))

        async def three_replies() -> tuple[list[str], int, int]:
            providers = []
            texts = []
            for _ in range(3):
                providers.append(get_provider(self.provider_class.name))
                texts.append((await consume(providers[-1].stream(HELLO))).text)
            return texts, len({id(p) for p in providers}), len({id(p.client()) for p in providers})

        texts, distinct_providers, distinct_clients = asyncio.run(three_replies())
        assert texts == ["one", "two", "three"]
        assert (distinct_providers, distinct_clients) == (1, 1)
        assert fake_server.connections_opened == 1  # kept alive from one reply to the next
        assert get_provider(self.provider_class.name) is not get_provider(self.provider_class.name)  # no loop: its own

    def test_missing_api_key_is_provider_not_configured(self, settings, monkeypatch, run_stream):
        setattr(settings, self.provider_class.key_setting, "")
        monkeypatch.delenv(self.provider_class.key_setting, raising=False)

        [outcome] = run_stream(self.provider_class(base_url="http://127.0.0.1:9"), HELLO)

        assert outcome.error.code == "provider_not_configured"
        assert self.provider_class.key_setting in outcome.error.message

    def test_configuration_comes_from_settings_then_environment(self, fake_server, settings, monkeypatch, run_stream):
        key_setting, url_setting = self.provider_class.key_setting, self.provider_class.url_setting
        settings.TENEX_LLM_MODEL = "model-from-settings"
        setattr(settings, key_setting, "sk-from-settings")
        monkeypatch.setenv(key_setting, "sk-from-env")
        monkeypatch.setenv(url_setting, fake_server.url + self.url_suffix)
        fake_server.reply_stream(self.wire.PATH, self.wire.text_reply(["ok"]))

        provider = get_provider(self.provider_class.name)
        [outcome] = run_stream(provider, HELLO)

        assert type(provider) is self.provider_class
        assert outcome.error is None and outcome.text == "ok"
        [sent] = fake_server.requests
        assert self.wire.api_key_of(sent.headers) == "sk-from-settings"
        assert sent.body["model"] == "model-from-settings"
