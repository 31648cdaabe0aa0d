"""`sse_json`: the JSON events of a raw SDK streaming response, as the providers read them."""

from __future__ import annotations

import asyncio

import pytest

from agents.providers.base import ProviderError, sse_json


class RawResponse:
    """The one method of an SDK's raw streaming response that `sse_json` uses; counts lines read."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.read = 0

    async def iter_lines(self):
        for line in self.lines:
            self.read += 1
            yield line


def collect(response: RawResponse, **kwargs) -> list[dict]:
    async def run() -> list[dict]:
        return [event async for event in sse_json(response, **kwargs)]

    return asyncio.run(run())


def test_events_are_their_data_lines_joined_and_the_body_is_read_past_done():
    response = RawResponse([
        ": a comment", "event: message_start", 'data: {"type": "a",', 'data: "n": 1}', "",
        "", 'data:{"type": "b"}', "id: 7", "",
        "data: [DONE]", "", "data: {\"type\": \"after\"}", "",
    ])
    assert collect(response, done="[DONE]") == [{"type": "a", "n": 1}, {"type": "b"}]
    assert response.read == len(response.lines)  # read to its end: the connection can serve again


def test_an_event_that_is_not_a_json_object_is_a_provider_error():
    with pytest.raises(ProviderError) as raised:
        collect(RawResponse(['data: {"type": "a"}', "", "data: [1, 2]", ""]))
    assert raised.value.code == "provider_error"
    with pytest.raises(ProviderError):
        collect(RawResponse(['data: {"cut short', ""]))
