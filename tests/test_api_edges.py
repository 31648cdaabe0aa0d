"""Inputs at the edges of what the API reads: every method on every route, OPTIONS, JSON nested too
deep, JSON labelled with another charset. Never a 5xx; every refusal in the one error shape."""

from __future__ import annotations

import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.helpers import assert_error
from workspaces.parsers import MAX_JSON_DEPTH

pytestmark = pytest.mark.django_db
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE")


def nested(depth: int) -> list:
    """`depth` arrays, one inside the other."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def deep_json(field: str, depth: int, **rest) -> bytes:
    """`{field: [[[...]]], **rest}` built as text: json.dumps itself recurses, and the point is
    bodies deeper than Python goes."""
    others = "".join(f", {json.dumps(name)}: {json.dumps(value)}" for name, value in rest.items())
    return f'{{"{field}": {"[" * depth}{"]" * depth}{others}}}'.encode()


def api_routes() -> list[str]:
    """Every route under /api/, its path converters as they appear in the URL conf."""
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            text = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, text)
            elif isinstance(pattern, URLPattern) and text.startswith("api/"):
                found.append("/" + text)

    walk(get_resolver().url_patterns, "")
    return found


@pytest.fixture
def objects(alice) -> dict[str, str]:
    """Real ids of each kind, so routes answer past their 404."""
    client = alice.client
    thread = client.post("/api/v1/chat/threads", {"title": "t"}, format="json").json()["id"]
    sent = client.post(f"/api/v1/chat/threads/{thread}/messages", {"content": "hi"}, format="json").json()
    document = client.post("/api/v1/knowledge/documents", {"title": "d", "body": "b"}, format="json").json()["id"]
    agent = client.post("/api/v1/agents", {"name": "a", "instructions": "i"}, format="json").json()["id"]
    return {"thread": thread, "message": sent["assistant_message"]["id"], "document": document, "agent": agent}


def concrete(route: str, objects: dict[str, str]) -> str:
    path = route.replace("<str:thread_id>", objects["thread"]).replace("<str:message_id>", objects["message"])
    if "<str:pk>" in path:
        kind = "thread" if "/chat/" in path else "document" if "/knowledge/" in path else "agent"
        path = path.replace("<str:pk>", objects[kind])
    assert "<" not in path, path
    return path


def test_every_method_on_every_route_answers_without_a_5xx_and_refuses_in_the_error_shape(alice, objects):
    routes = api_routes()
    assert len(routes) >= 15, routes
    seen = set()
    for route in routes:
        path = concrete(route, objects)
        for method in METHODS:
            response = alice.client.generic(method, path, b"{}", content_type="application/json")
            seen.add(response.status_code)
            assert response.status_code < 500, (method, path, response.status_code, response.content[:300])
            if response.status_code >= 400 and method != "HEAD":
                assert_error(response, response.status_code)
            if response.status_code == 405:
                assert response.has_header("Allow"), (method, path)
    assert {200, 405} <= seen


def test_options_describes_a_route_without_a_5xx(alice):
    for path in ("/api/v1/knowledge/brand", "/api/v1/chat/threads", "/api/v1/agents"):
        response = alice.client.options(path)
        assert response.status_code == 200, (path, response.content[:300])
        assert response.json()["schema"] == "/api/v1/schema/"
        assert "GET" in response["Allow"]


@pytest.mark.parametrize(
    ("path", "field", "rest"),
    [
        ("/api/v1/chat/threads", "metadata", {}),
        ("/api/v1/agents", "input_schema", {"name": "a", "instructions": "i"}),
        ("/api/v1/knowledge/brand", "facts", {}),
    ],
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 951, 5000])
def test_json_nested_deeper_than_the_limit_is_a_400(alice, path, field, rest, depth):
    method = alice.client.put if path.endswith("brand") else alice.client.post
    response = method(path, deep_json(field, depth, **rest), content_type="application/json")
    error = assert_error(response, 400, "invalid_json")
    assert str(MAX_JSON_DEPTH) in error["message"]


def test_json_nested_deeper_than_the_limit_in_message_attachments_is_a_400(alice, objects):
    response = alice.client.post(
        f"/api/v1/chat/threads/{objects['thread']}/messages",
        deep_json("attachments", 2000, content="hi"),
        content_type="application/json",
    )
    assert_error(response, 400, "invalid_json")


def test_json_at_the_depth_limit_is_read(alice):
    response = alice.client.post(
        "/api/v1/chat/threads", {"metadata": {"deep": nested(MAX_JSON_DEPTH - 2)}}, format="json"
    )
    assert response.status_code == 201, response.content[:300]


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "utf-16", "nonsense"])
def test_json_is_read_as_utf8_whatever_charset_it_names(alice, charset):
    body = json.dumps({"title": "Grüße 東京"}, ensure_ascii=False).encode()
    response = alice.client.post(
        "/api/v1/chat/threads", body, content_type=f"application/json; charset={charset}"
    )
    assert response.status_code == 201, response.content[:300]
    assert response.json()["title"] == "Grüße 東京"


def test_json_that_is_not_utf8_is_a_400(alice):
    response = alice.client.post("/api/v1/chat/threads", '{"title": "Grüße"}'.encode("latin-1"),
                                 content_type="application/json; charset=latin-1")
    assert_error(response, 400, "invalid_json")


def test_nesting_limit_holds_for_mcp_tool_arguments(alice):
    from asgiref.sync import async_to_sync

    from chat.mcp.server import call_chat_tool
    from chat.mcp.tools import TOOLS_BY_NAME
    from workspaces.tenancy import Scope

    scope = Scope(workspace_id=alice.user.memberships.get().workspace_id, user_id=alice.id)

    async def no_progress(*args) -> None:
        return None

    result = async_to_sync(call_chat_tool)(
        TOOLS_BY_NAME["create_chat_thread"], scope, {"title": nested(MAX_JSON_DEPTH + 5)}, no_progress
    )
    assert result.is_error
    assert result.structured_content["error"]["code"] == "invalid_json"


def test_an_idempotent_replay_is_byte_for_byte_the_first_answer(alice, objects):
    url = f"/api/v1/chat/threads/{objects['thread']}/messages"
    body = {"content": "Grüße, what does Pro include?", "attachments": []}
    first = alice.client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="replay-1")
    assert first.status_code == 202, first.content[:300]
    again = alice.client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="replay-1")
    assert again.status_code == 202
    assert again.content == first.content


def test_a_bad_last_event_id_is_a_400_in_the_query_too_when_the_header_is_good(alice, objects):
    url = f"/api/v1/chat/threads/{objects['thread']}/messages/{objects['message']}/stream"
    assert_error(alice.client.get(f"{url}?last_event_id=-1", HTTP_LAST_EVENT_ID="0"), 400, "invalid_request")


def test_format_is_no_switch_of_the_api(alice):
    response = alice.client.get("/api/v1/chat/threads?format=xml")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
