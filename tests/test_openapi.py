"""The OpenAPI document: valid OpenAPI 3, generated without warnings, errors in one documented shape."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client
from drf_spectacular.validation import validate_schema

THREAD_PATHS = {
    "/api/v1/chat/threads": {"get", "post"},
    "/api/v1/chat/threads/{id}": {"get", "patch", "delete"},
    "/api/v1/chat/threads/{thread_id}/messages": {"get"},
}


@pytest.fixture(scope="module")
def schema() -> dict:
    response = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_schema_is_a_valid_openapi_3_document(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # drf-spectacular's copy of the official OpenAPI 3 JSON Schema


def test_schema_also_serves_yaml():
    response = Client().get("/api/v1/schema/")
    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_thread_paths_are_documented(schema):
    for path, methods in THREAD_PATHS.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))
    listed = {p["name"] for p in schema["paths"]["/api/v1/chat/threads"]["get"]["parameters"]}
    assert {"cursor", "limit", "user_id", "pinned", "archived", "agent_id", "q"} <= listed


def test_bearer_key_security_scheme(schema):
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["BearerKey"].items()
    for path in THREAD_PATHS:
        for operation in schema["paths"][path].values():
            assert {"BearerKey": []} in operation["security"]


def test_error_component_has_the_one_error_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = _resolve(schema, error["properties"]["error"])
    assert set(detail["properties"]) == {"code", "message", "fields"}
    assert set(detail["required"]) == {"code", "message", "fields"}
    assert detail["properties"]["fields"]["nullable"] is True
    assert detail["properties"]["fields"]["additionalProperties"]["items"]["type"] == "string"


def test_operations_document_their_errors_with_the_error_component(schema):
    error_ref = {"$ref": "#/components/schemas/Error"}

    def error_schema(operation: dict, status: str) -> dict:
        return operation["responses"][status]["content"]["application/json"]["schema"]

    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status in ("401", "403", "429", "503"):
                assert error_schema(operation, status) == error_ref, (method, path, status)
            if "{" in path:
                assert error_schema(operation, "404") == error_ref, (method, path)
            if method in {"post", "patch", "put"}:
                assert error_schema(operation, "400") == error_ref, (method, path)
    listing = schema["paths"]["/api/v1/chat/threads"]["get"]
    assert error_schema(listing, "400") == error_ref  # a cursor that does not decode


def test_generation_has_no_warnings_or_errors():
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", os.devnull],
        check=False,
        cwd=settings.BASE_DIR,
        env={**os.environ, "TENEX_TESTING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Error" not in result.stderr, result.stderr


def test_interactive_docs_page():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower() and b"/api/v1/schema/" in response.content


def _component(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]


def test_request_bodies_refuse_unknown_fields_as_the_service_does(schema):
    for name, component in schema["components"]["schemas"].items():
        if name.endswith("Request") and "properties" in component:
            assert component.get("additionalProperties") is False, name


def test_ids_carry_their_shape_in_paths_and_bodies(schema):
    for path, item in schema["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert parameter["schema"]["pattern"].startswith("^"), (path, parameter)
    stream = schema["paths"]["/api/v1/chat/threads/{thread_id}/messages/{message_id}/stream"]["get"]
    patterns = {p["name"]: p["schema"].get("pattern") for p in stream["parameters"]}
    assert patterns["thread_id"] == "^thr_[0-9A-Za-z]{1,28}$" and patterns["message_id"].startswith("^msg_")
    create = _component(schema, "ThreadCreateSchemaRequest")["properties"]
    assert create["agent_id"]["pattern"].startswith("^agt_") and create["agent_id"]["nullable"] is True
    assert create["knowledge_document_ids"]["items"]["pattern"].startswith("^doc_")


def test_free_form_json_fields_are_objects_and_not_null(schema):
    for component, field in (("ThreadCreateSchemaRequest", "metadata"), ("AgentCreateSchemaRequest", "input_schema")):
        value = _component(schema, component)["properties"][field]
        assert value["type"] == "object" and not value.get("nullable"), (component, value)


def test_headers_say_what_the_service_accepts(schema):
    send = schema["paths"]["/api/v1/chat/threads/{thread_id}/messages"]["post"]
    key = next(p for p in send["parameters"] if p["name"] == "Idempotency-Key")["schema"]
    assert (key["minLength"], key["maxLength"]) == (1, 255) and key["pattern"] == "^[\\x20-\\x7e]+$"
    stream = schema["paths"]["/api/v1/chat/threads/{thread_id}/messages/{message_id}/stream"]["get"]
    for parameter in stream["parameters"]:
        if parameter["name"] in ("Last-Event-ID", "last_event_id"):
            assert parameter["schema"]["type"] == "integer" and parameter["schema"]["minimum"] == 0


def test_every_status_an_operation_answers_is_listed(schema):
    paths = schema["paths"]
    assert "404" in paths["/api/v1/chat/threads"]["post"]["responses"]  # an unknown agent_id
    assert {"409", "422"} <= set(paths["/api/v1/chat/threads/{thread_id}/messages"]["post"]["responses"])
    stream = paths["/api/v1/chat/threads/{thread_id}/messages/{message_id}/stream"]["get"]["responses"]
    assert {"200", "204", "400"} <= set(stream)  # 400: a Last-Event-ID that is not an id
    assert "406" in paths["/api/v1/chat/threads"]["get"]["responses"]


def test_streams_are_described_as_server_sent_events(schema):
    stream = schema["paths"]["/api/v1/chat/threads/{thread_id}/messages/{message_id}/stream"]["get"]
    event = stream["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert set(event["required"]) == {"id", "event", "data"}
    assert event["properties"]["event"]["enum"] == ["delta", "tool_call", "done", "error"]
    send = schema["paths"]["/api/v1/chat/threads/{thread_id}/messages"]["post"]["responses"]
    assert "text/event-stream" in send["200"]["content"] and "application/json" in send["202"]["content"]


def test_no_format_switch_is_documented_and_urls_are_not_uris_where_empty_is_valid(schema):
    for item in schema["paths"].values():
        for operation in item.values():
            assert all(p["name"] != "format" for p in operation.get("parameters", []))
    assert "format" not in _component(schema, "DocumentSchema")["properties"]["source_url"]
