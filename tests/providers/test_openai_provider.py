"""OpenAIProvider against a local server speaking the Chat Completions streaming wire format."""

from __future__ import annotations

import json
import logging

import pytest

from agents.providers.base import (
    ProviderRequest,
    TextDelta,
    ToolCallRequest,
    Turn,
    Usage,
)
from agents.providers.openai import OpenAIProvider
from tests.providers import (
    HELLO,
    SEARCH,
    TOOL_ROUND_TRIP,
    ProviderContract,
    search_call,
)
from tests.providers import fake_openai as wire


def function_call(call_id: str, query: str) -> dict:
    arguments = json.dumps({"query": query})
    return {"id": call_id, "type": "function", "function": {"name": "search_knowledge", "arguments": arguments}}


class TestOpenAIContract(ProviderContract):
    wire = wire
    provider_class = OpenAIProvider
    url_suffix = "/v1"

    def test_text_arrives_as_one_delta_per_chunk_then_usage(self, fake_server, provider, run_stream):
        fake_server.reply_stream(wire.PATH, wire.text_reply(["Hel", "lo, ", "wor", "ld!"]))

        [outcome] = run_stream(provider, HELLO)

        assert outcome.error is None
        assert outcome.of_type(TextDelta) == [TextDelta("Hel"), TextDelta("lo, "), TextDelta("wor"), TextDelta("ld!")]
        assert outcome.text == "Hello, world!"
        assert outcome.events[-1] == Usage(input_tokens=11, output_tokens=7)
        [sent] = fake_server.requests
        assert sent.headers["authorization"] == "Bearer sk-test"
        assert sent.body == {
            "model": wire.MODEL,
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 1024,
        }

    def test_tool_call_fragments_become_one_request_per_call(self, fake_server, provider, run_stream):
        fake_server.reply_stream(
            wire.PATH,
            [
                *wire.text_chunks(["Let me look."]),
                wire.tool_call_delta(0, call_id="call_a", name="search_knowledge", arguments=""),
                wire.tool_call_delta(0, arguments='{"qu'),
                wire.tool_call_delta(0, arguments='ery": "refu'),
                wire.tool_call_delta(0, arguments='nd policy"}'),
                wire.tool_call_delta(1, call_id="call_b", name="search_knowledge", arguments='{"query":'),
                wire.tool_call_delta(1, arguments=' "returns"}'),
                wire.chunk(finish_reason="tool_calls"),
                wire.usage_chunk(40, 30),
                wire.DONE,
            ],
        )
        request = ProviderRequest(system="", turns=[Turn(role="user", content="Refunds?")], tools=[SEARCH])

        [outcome] = run_stream(provider, request)

        assert outcome.error is None
        assert outcome.events == [
            TextDelta("Let me look."),
            search_call("call_a", "refund policy"),
            search_call("call_b", "returns"),
            Usage(input_tokens=40, output_tokens=30),
        ]
        [body] = fake_server.bodies(wire.PATH)
        assert body["messages"] == [{"role": "user", "content": "Refunds?"}]  # no empty system message
        function = {"name": SEARCH.name, "description": SEARCH.description, "parameters": SEARCH.parameters}
        assert body["tools"] == [{"type": "function", "function": function}]

    def test_tool_results_go_back_as_tool_messages_after_the_calls(self, fake_server, provider, run_stream):
        fake_server.reply_stream(wire.PATH, wire.text_reply(["Refunds take 5 days."]))

        [outcome] = run_stream(provider, TOOL_ROUND_TRIP)

        assert outcome.error is None and outcome.text == "Refunds take 5 days."
        [body] = fake_server.bodies(wire.PATH)
        assert body["messages"] == [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Refunds?"},
            {"role": "assistant", "content": None, "tool_calls": [function_call("call_a", "refunds")]},
            {"role": "tool", "tool_call_id": "call_a", "content": '{"results": []}'},
            {
                "role": "assistant",
                "content": "Looking further.",
                "tool_calls": [function_call("call_b", "refund policy"), function_call("call_c", "returns")],
            },
            {"role": "tool", "tool_call_id": "call_b", "content": '{"results": [1]}'},
            {"role": "tool", "tool_call_id": "call_c", "content": '{"results": [2]}'},
        ]

    def test_truncated_tool_arguments_become_an_empty_object(self, fake_server, provider, run_stream, caplog):
        fake_server.reply_stream(
            wire.PATH,
            [
                wire.tool_call_delta(0, call_id="call_a", name="search_knowledge", arguments='{"query": "ref'),
                wire.chunk(finish_reason="length"),
                wire.usage_chunk(10, 1024),
                wire.DONE,
            ],
        )

        with caplog.at_level(logging.WARNING):
            [outcome] = run_stream(provider, HELLO)

        assert outcome.error is None
        assert outcome.of_type(ToolCallRequest) == [ToolCallRequest(id="call_a", name="search_knowledge", arguments={})]
        assert "not a JSON object" in caplog.text

    @pytest.mark.parametrize(
        "error_type, error_code, expected",
        [("server_error", None, "provider_error"), ("requests", "rate_limit_exceeded", "rate_limited")],
    )
    def test_error_chunk_mid_stream(self, fake_server, provider, run_stream, error_type, error_code, expected):
        error_step = wire.error_chunk(error_type, "It broke.", error_code)
        self.expect_mid_stream_error(fake_server, provider, run_stream, error_step, expected)

    @pytest.mark.parametrize(
        "status, error_type, error_code, expected",
        [
            (500, "server_error", None, "provider_error"),
            (503, "server_error", None, "provider_unavailable"),
            (429, "requests", "rate_limit_exceeded", "rate_limited"),
            (429, "insufficient_quota", "insufficient_quota", "provider_quota"),
            (401, "invalid_request_error", "invalid_api_key", "provider_auth"),
            (400, "invalid_request_error", "context_length_exceeded", "provider_bad_request"),
        ],
    )
    def test_http_error_before_streaming(
        self, fake_server, provider, run_stream, status, error_type, error_code, expected
    ):
        body = wire.error_body(error_type, "Nope.", error_code)
        self.expect_http_error(fake_server, provider, run_stream, status, body, expected)


def test_api_openai_com_gets_max_completion_tokens():
    provider = OpenAIProvider(base_url="https://api.openai.com/v1", api_key="sk-test", model="gpt-test")

    params = provider.request_params(HELLO, provider.client())

    assert params["max_completion_tokens"] == 1024 and "max_tokens" not in params
