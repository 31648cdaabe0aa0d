"""Small assertions shared by the API tests."""

from __future__ import annotations

import socket

from workspaces.errors import NOT_FOUND_BODY


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_not_found(response) -> None:
    assert response.status_code == 404, (response.status_code, getattr(response, "content", b"")[:500])
    assert response.json() == NOT_FOUND_BODY


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def collect_pages(client, url: str, limit: int = 7) -> list[dict]:
    items: list[dict] = []
    separator = "&" if "?" in url else "?"
    response = client.get(f"{url}{separator}limit={limit}")
    while True:
        assert response.status_code == 200, response.content[:500]
        body = response.json()
        items.extend(body["results"])
        if not body["next"]:
            return items
        response = client.get(body["next"])


def parse_sse(raw: bytes | str) -> list[dict]:
    """Events of an SSE body as dicts: {"id": int, "event": str, "data": dict}; comments skipped."""
    import json

    text = raw.decode() if isinstance(raw, bytes) else raw
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def streamed_body(response) -> bytes:
    """The whole body of a streaming test-client response (sync or async content)."""
    from asgiref.sync import async_to_sync

    content = response.streaming_content
    if hasattr(content, "__aiter__"):

        async def collect() -> bytes:
            return b"".join([chunk async for chunk in content])

        return async_to_sync(collect)()
    return b"".join(content)


def joined_deltas(events: list[dict]) -> str:
    return "".join(e["data"]["delta"] for e in events if e["event"] == "delta")


def assert_written_as_declared(schema, written: dict, instance) -> None:
    """A hand-written API object (`message_data`, `thread_data`) is what DRF's own rendering of the
    schema's declared fields gives: the same keys in the same order, the same JSON bytes."""
    from rest_framework import serializers
    from rest_framework.renderers import JSONRenderer

    declared = serializers.ModelSerializer.to_representation(schema, instance)
    assert list(written) == list(declared)
    assert JSONRenderer().render(written) == JSONRenderer().render(declared)
