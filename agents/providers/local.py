"""The offline, deterministic provider: grounds its reply in the workspace's knowledge.

Round one asks for `search_knowledge` with the user's message as the query (a real tool call the
runtime executes). Round two quotes what the search found, one word per delta, pausing
TENEX_LOCAL_TOKEN_DELAY_MS between deltas. With nothing found it still answers from the system
prompt and the question.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator

from django.conf import settings

from agents.providers.base import (
    ATTACHMENT_MARKER,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
    ToolCallRequest,
    Turn,
    Usage,
)
from workspaces.ids import new_call_id

_CHUNKS = re.compile(r"\S+\s*|\s+")
MAX_QUOTES = 3
MAX_QUERY_CHARS = 500
# With no delay, words come in bursts, as a fast provider's tokens do when several arrive in one
# network read: the event loop gets a turn every this many words, not after each one.
BURST_WORDS = 64


def split_words(text: str) -> Iterator[str]:
    """One chunk per word with its trailing whitespace, lazily (a slow reply holds its text, not a
    list of its words); the chunks join back to `text` exactly."""
    return (match.group() for match in _CHUNKS.finditer(text))


def _question_and_attachments(turn: Turn) -> tuple[str, list[str]]:
    question, *attached = turn.content.split(ATTACHMENT_MARKER)
    titles = [part.split(" ---", 1)[0] for part in attached]
    return question, titles


def _first_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rsplit(" ", 1)[0] + "…"


class LocalProvider:
    name = "local"

    def __init__(self, delay_ms: int | None = None):
        self.delay = (settings.TENEX_LOCAL_TOKEN_DELAY_MS if delay_ms is None else delay_ms) / 1000

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        last_user = max((i for i, t in enumerate(request.turns) if t.role == "user"), default=None)
        if last_user is None:
            question, titles, results = "", [], []
        else:
            question, titles = _question_and_attachments(request.turns[last_user])
            results = [t for t in request.turns[last_user + 1 :] if t.role == "tool"]
        offered = {tool.name for tool in request.tools}
        input_tokens = (len(request.system) + sum(len(t.content) for t in request.turns)) // 4
        if "search_knowledge" in offered and not results and question.strip():
            yield ToolCallRequest(
                id=new_call_id(), name="search_knowledge", arguments={"query": question.strip()[:MAX_QUERY_CHARS]}
            )
            yield Usage(input_tokens=input_tokens, output_tokens=0)
            return
        reply = self.compose(request.system, question, titles, results)
        count = 0
        for word in split_words(reply):
            if count and (self.delay or count % BURST_WORDS == 0):
                await asyncio.sleep(self.delay)
            count += 1
            yield TextDelta(word)
        yield Usage(input_tokens=input_tokens, output_tokens=count)

    @staticmethod
    def _passages(results: list[Turn]) -> list[dict]:
        passages: list[dict] = []
        for turn in results:
            try:
                payload = json.loads(turn.content)
            except ValueError:
                continue
            if isinstance(payload, dict):
                passages.extend(r for r in payload.get("results") or [] if isinstance(r, dict))
        return passages

    def compose(self, system: str, question: str, attachment_titles: list[str], results: list[Turn]) -> str:
        passages = self._passages(results)
        topic = _first_line(question, 120) or "your request"
        parts: list[str] = []
        if passages:
            parts.append(f"Here is what your knowledge base says about “{topic}”:")
            for passage in passages[:MAX_QUOTES]:
                title = passage.get("title") or "a document"
                text = " ".join(str(passage.get("passage") or "").split())
                parts.append(f"From “{title}”: “{text}”")
        else:
            parts.append(f"I found nothing in the workspace's knowledge about “{topic}” yet.")
            if system.strip():
                parts.append(f"Going by my instructions ({_first_line(system)}), here is how I would approach it:")
            else:
                parts.append("Here is how I would approach it:")
            parts.append(
                "start from the goal, name the audience, and keep each point short and concrete. "
                "Add documents to the knowledge base and I will quote them."
            )
        if attachment_titles:
            parts.append("I also read what you attached: " + ", ".join(f"“{t}”" for t in attachment_titles) + ".")
        return "\n\n".join(parts)
