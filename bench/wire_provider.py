#!/usr/bin/env python
"""A lean LLM provider for bench/stream.py's provider mode: OpenAI Chat Completions and Anthropic
Messages streaming on the wire, one word per chunk, --delay-ms apart.

    python bench/wire_provider.py --port 8765 [--words 130] [--delay-ms 20]

Its own process on asyncio streams (keep-alive HTTP/1.1, chunked responses), every chunk's bytes
built once at start: it costs little per word, so the server under test is the bottleneck, and
bench/stream.py prints its CPU beside the server's to show it.

- `POST /v1/chat/completions` (OpenAI) and `POST /v1/messages` (Anthropic), streaming only.
- A request that offers a `search_knowledge` tool and carries no tool result yet is answered with
  that tool call (the user's last message as the query) at once, as a model grounding its answer
  does; otherwise with the reply: --words words, one per chunk, the first at once and each next
  one --delay-ms later, then the finish and usage chunks.

The wire format follows tests/providers/fake_openai.py and fake_anthropic.py (the test doubles).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets

VOCAB = (
    "the aurora launch plan keeps pricing simple with three tiers while channels and support teams "
    "share one calendar so every customer hears the same story at the same time and nobody waits "
    "for answers about discounts trials renewals or onboarding sessions"
).split()
HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(payload: dict, event: str | None = None) -> bytes:
    line = f"data: {json.dumps(payload)}\n\n"
    return chunked(((f"event: {event}\n" if event else "") + line).encode())


def reply_words(count: int) -> list[str]:
    words = [VOCAB[i % len(VOCAB)] for i in range(count)]
    words[0] = words[0].capitalize()
    return [word + ("." if i == count - 1 else " ") for i, word in enumerate(words)]


# --- OpenAI ----------------------------------------------------------------------------------------
def openai_chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    payload: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
                     "model": "bench-model", "choices": []}
    if delta is not None or finish:
        payload["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
    if usage is not None:
        payload["usage"] = usage
    return sse(payload)


class OpenAIWire:
    def __init__(self, words: list[str]):
        self.opening = openai_chunk({"role": "assistant", "content": ""})
        self.words = [openai_chunk({"content": word}) for word in words]
        self.ending = (openai_chunk(None, "stop")
                       + openai_chunk(None, usage={"prompt_tokens": 300, "completion_tokens": len(words),
                                                   "total_tokens": 300 + len(words)})
                       + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    @staticmethod
    def wants_tool(request: dict) -> str | None:
        offered = any(tool.get("function", {}).get("name") == "search_knowledge" for tool in request.get("tools") or ())
        messages = request.get("messages") or []
        if not offered or any(m.get("role") == "tool" for m in messages):
            return None
        return next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")

    @staticmethod
    def tool_call(query: str) -> bytes:
        call_id = "call_" + "".join(secrets.choice(ALPHABET) for _ in range(22))
        fragment = {"index": 0, "id": call_id, "type": "function",
                    "function": {"name": "search_knowledge", "arguments": json.dumps({"query": query})}}
        return (openai_chunk({"role": "assistant", "content": None, "tool_calls": [fragment]})
                + openai_chunk(None, "tool_calls")
                + openai_chunk(None, usage={"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220})
                + chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")


# --- Anthropic -------------------------------------------------------------------------------------
def anthropic_event(name: str, payload: dict) -> bytes:
    return sse({"type": name, **payload}, event=name)


def message_start() -> bytes:
    usage = {"input_tokens": 300, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
    return anthropic_event("message_start", {"message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "bench-model", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})


def message_end(reason: str, output_tokens: int) -> bytes:
    return (anthropic_event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": None},
                                              "usage": {"output_tokens": output_tokens}})
            + anthropic_event("message_stop", {}) + b"0\r\n\r\n")


class AnthropicWire:
    def __init__(self, words: list[str]):
        self.opening = (message_start()
                        + anthropic_event("content_block_start", {"index": 0, "content_block": {"type": "text",
                                                                                                "text": ""}}))
        self.words = [anthropic_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                                    "text": word}})
                      for word in words]
        self.ending = anthropic_event("content_block_stop", {"index": 0}) + message_end("end_turn", len(words))

    @staticmethod
    def wants_tool(request: dict) -> str | None:
        offered = any(tool.get("name") == "search_knowledge" for tool in request.get("tools") or ())
        messages = request.get("messages") or []
        has_result = any(isinstance(m.get("content"), list) and any(
            block.get("type") == "tool_result" for block in m["content"]) for m in messages)
        if not offered or has_result:
            return None
        for message in reversed(messages):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                return "".join(block.get("text", "") for block in content if block.get("type") == "text")
        return ""

    @staticmethod
    def tool_call(query: str) -> bytes:
        call_id = "toolu_" + "".join(secrets.choice(ALPHABET) for _ in range(22))
        block = {"type": "tool_use", "id": call_id, "name": "search_knowledge", "input": {}}
        return (message_start()
                + anthropic_event("content_block_start", {"index": 0, "content_block": block})
                + anthropic_event("content_block_delta", {"index": 0, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps({"query": query})}})
                + anthropic_event("content_block_stop", {"index": 0})
                + message_end("tool_use", 20))


async def serve(args: argparse.Namespace) -> None:
    words = reply_words(args.words)
    wires = {"/v1/chat/completions": OpenAIWire(words), "/v1/messages": AnthropicWire(words)}
    delay = args.delay_ms / 1000

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1].split("?")[0]
                length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                               if line.lower().startswith("content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                wire = wires.get(path)
                if wire is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    continue
                query = wire.wants_tool(json.loads(body or b"{}"))
                if query is not None:
                    writer.write(HEAD + wire.tool_call(query))
                    continue
                writer.write(HEAD + wire.opening + wire.words[0])
                for chunk in wire.words[1:]:
                    await asyncio.sleep(delay)
                    writer.write(chunk)
                writer.write(wire.ending)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", args.port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--words", type=int, default=130)
    parser.add_argument("--delay-ms", type=int, default=20)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
