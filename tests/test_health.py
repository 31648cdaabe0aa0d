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



def test_a_pool_smaller_than_the_threads_that_use_it_is_warned_about(settings):
    from workspaces.checks import pool_size_warnings

    threads = settings.DATABASE_THREADS
    assert settings.TENEX_REQUEST_THREADS < threads  # the others count too
    assert pool_size_warnings({"max_size": threads}, threads) == []
    assert pool_size_warnings(None, threads) == []  # no pool: a connection per thread
    [warning] = pool_size_warnings({"max_size": threads - 1}, threads)
    assert warning.id == "tenex.W002" and f"({threads - 1})" in warning.msg
