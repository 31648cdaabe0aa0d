"""Request-size and rate limits answer in the one error shape."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_error

pytestmark = pytest.mark.django_db
THREADS = "/api/v1/chat/threads"


def test_oversized_json_body_is_413_and_creates_nothing(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"title": "big", "system_prompt": "x" * 20_000})
    assert_error(alice.client.generic("POST", THREADS, body, content_type="application/json"), 413, "payload_too_large")
    assert alice.client.get(THREADS).json()["results"] == []


def test_rate_limit_is_429_with_retry_after(alice, settings):
    settings.TENEX_RATE_LIMIT = "3/min"
    for _ in range(3):
        assert alice.client.get(THREADS).status_code == 200
    response = alice.client.get(THREADS)
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0
