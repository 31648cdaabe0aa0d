"""Security headers on every response: the Content-Security-Policy (django-csp) and its one
allowance, for ReDoc's page, besides Django's own headers."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import ResolverMatch

from tenex.csp import ContentSecurityPolicyMiddleware


def directives(response) -> dict[str, list[str]]:
    found = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        found[name] = values
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login", "/admin/login/", "/api/docs/", "/api/v1/workspace", "/nowhere"])
def test_pages_and_api_answers_carry_the_policy_and_the_usual_headers(path):
    response = Client().get(path)
    policy = directives(response)
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and "worker-src" not in policy
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"


def policy_for(url_name: str) -> dict[str, list[str]]:
    request = RequestFactory().get("/docs")
    request.resolver_match = ResolverMatch(lambda r: None, (), {}, url_name=url_name)
    middleware = ContentSecurityPolicyMiddleware(lambda r: HttpResponse())
    return directives(middleware(request))


def test_only_redoc_may_style_inline_and_start_a_blob_worker():
    assert policy_for("redoc")["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy_for("redoc")["worker-src"] == ["'self'", "blob:"]
    assert policy_for("redoc")["script-src"] == ["'self'"]
    assert policy_for("docs")["style-src"] == ["'self'"] and "worker-src" not in policy_for("docs")
