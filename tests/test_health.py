"""Liveness and readiness probes."""

from __future__ import annotations

import pytest
from django.test import Client


def test_healthz_answers_without_a_database():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_redis(settings):
    assert settings.REDIS_URL, "the suite runs against Redis (scripts/test sets REDIS_URL)"
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "stream_store": "ok"}}


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["stream_store"].startswith("error: ")
