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
