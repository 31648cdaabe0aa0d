"""AnthropicProvider against a local server speaking the Messages API streaming wire format."""

from __future__ import annotations

import pytest

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import (
    ProviderRequest,
    TextDelta,
    ToolCallRequest,
    Turn,
    Usage,
)
from tests.providers import (
    HELLO,
    SEARCH,
    TOOL_ROUND_TRIP,
    ProviderContract,
    search_call,
)
from tests.providers import fake_anthropic as wire


def tool_use(tool_use_id: str, query: str) -> dict:
    return {"type": "tool_use", "id": tool_use_id, "name": "search_knowledge", "input": {"query": query}}


def tool_result(tool_use_id: str, content: str) -> dict:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}


class TestAnthropicContract(ProviderContract):
    wire = wire
    provider_class = AnthropicProvider

    def test_text_arrives_as_one_delta_per_text_delta_then_usage(self, fake_server, provider, run_stream):
        fake_server.reply_stream(wire.PATH, wire.text_reply(["Hel", "lo, ", "wor", "ld!"], output_tokens=9))

        [outcome] = run_stream(provider, HELLO)

        assert outcome.error is None
        assert outcome.of_type(TextDelta) == [TextDelta("Hel"), TextDelta("lo, "), TextDelta("wor"), TextDelta("ld!")]
        assert outcome.text == "Hello, world!"
        assert outcome.events[-1] == Usage(input_tokens=25, output_tokens=9)
        [sent] = fake_server.requests
        assert wire.api_key_of(sent.headers) == "sk-test"
        assert "anthropic-version" in sent.headers
        assert sent.body == {
            "model": wire.MODEL,
            "max_tokens": 1024,
            "system": "You are terse.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "stream": True,
        }

    def test_tool_use_blocks_become_one_request_each(self, fake_server, provider, run_stream):
        fake_server.reply_stream(
            wire.PATH,
            [
                wire.message_start(input_tokens=20, cache_read_input_tokens=5),
                *wire.text_block(0, ["Let me ", "check."]),
                wire.PING,
                *wire.tool_use_block(1, "toolu_a", "search_knowledge", ['{"qu', 'ery": "refu', 'nd policy"}']),
                *wire.tool_use_block(2, "toolu_b", "search_knowledge", ['{"query":', ' "returns"}']),
                wire.message_delta("tool_use", 61),
                wire.MESSAGE_STOP,
            ],
        )
        request = ProviderRequest(system="", turns=[Turn(role="user", content="Refunds?")], tools=[SEARCH])

        [outcome] = run_stream(provider, request)

        assert outcome.error is None
        assert outcome.events == [
            TextDelta("Let me "),
            TextDelta("check."),
            search_call("toolu_a", "refund policy"),
            search_call("toolu_b", "returns"),
            Usage(input_tokens=25, output_tokens=61),  # cache reads count as input
        ]
        [body] = fake_server.bodies(wire.PATH)
        assert "system" not in body
        assert body["tools"] == [
            {"name": SEARCH.name, "description": SEARCH.description, "input_schema": SEARCH.parameters}
        ]

    def test_tool_results_go_back_grouped_in_one_user_message(self, fake_server, provider, run_stream):
        fake_server.reply_stream(wire.PATH, wire.text_reply(["Refunds take 5 days."]))

        [outcome] = run_stream(provider, TOOL_ROUND_TRIP)

        assert outcome.error is None and outcome.text == "Refunds take 5 days."
        [body] = fake_server.bodies(wire.PATH)
        assert body["system"] == "Be kind."
        assert body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "Refunds?"}]},
            {"role": "assistant", "content": [tool_use("call_a", "refunds")]},  # no empty text block
            {"role": "user", "content": [tool_result("call_a", '{"results": []}')]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking further."},
                    tool_use("call_b", "refund policy"),
                    tool_use("call_c", "returns"),
                ],
            },
            {
                "role": "user",
                "content": [tool_result("call_b", '{"results": [1]}'), tool_result("call_c", '{"results": [2]}')],
            },
        ]

    def test_invalid_tool_input_becomes_an_empty_object(self, fake_server, provider, run_stream):
        fake_server.reply_stream(
            wire.PATH,
            [
                wire.message_start(),
                *wire.tool_use_block(0, "toolu_a", "search_knowledge", ['{"query": ', "nope}"]),
                wire.message_delta("tool_use", 12),
                wire.MESSAGE_STOP,
            ],
        )

        [outcome] = run_stream(provider, HELLO)

        assert outcome.error is None
        [call] = outcome.of_type(ToolCallRequest)
        assert call == ToolCallRequest(id="toolu_a", name="search_knowledge", arguments={})

    @pytest.mark.parametrize(
        "error_type, expected",
        [
            ("overloaded_error", "provider_unavailable"),
            ("api_error", "provider_error"),
            ("rate_limit_error", "rate_limited"),
        ],
    )
    def test_error_event_mid_stream(self, fake_server, provider, run_stream, error_type, expected):
        error_step = wire.error_event(error_type, "It broke.")
        self.expect_mid_stream_error(fake_server, provider, run_stream, error_step, expected)

    @pytest.mark.parametrize(
        "status, error_type, expected",
        [
            (500, "api_error", "provider_error"),
            (529, "overloaded_error", "provider_unavailable"),
            (429, "rate_limit_error", "rate_limited"),
            (401, "authentication_error", "provider_auth"),
            (400, "invalid_request_error", "provider_bad_request"),
        ],
    )
    def test_http_error_before_streaming(self, fake_server, provider, run_stream, status, error_type, expected):
        body = wire.error_body(error_type, "Nope.")
        self.expect_http_error(fake_server, provider, run_stream, status, body, expected)
