"""Limits hold across processes: two real daphne processes on one Redis count against one total."""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings

from tests.processes import daphne_process
from workspaces import keys

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
URL = "/api/v1/workspace"


@pytest.fixture
def two_processes():
    """Two daphne processes sharing the test's Redis namespace, with small limits."""
    env = {
        "TENEX_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "TENEX_RATE_LIMIT": "6/hour",
        "TENEX_ANON_RATE_LIMIT": "4/hour",
    }
    with daphne_process(**env) as (a, _), daphne_process(**env) as (b, _):
        yield a, b


def test_a_key_gets_its_429_at_the_limit_not_at_twice_it(two_processes, alice):
    a, b = two_processes
    headers = {"Authorization": f"Bearer {alice.key}"}
    statuses = [httpx.get(f"{base}{URL}", headers=headers, timeout=10).status_code for base in (a, b) * 4]
    assert statuses == [200] * 6 + [429, 429]
    refused = httpx.get(f"{a}{URL}", headers=headers, timeout=10)
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["Retry-After"]) > 0


def test_failed_authentications_from_one_address_are_counted_across_processes(two_processes):
    a, b = two_processes
    statuses = [
        httpx.get(f"{base}{URL}", headers={"Authorization": f"Bearer {keys.generate_key()}"}, timeout=10).status_code
        for base in (a, b) * 3
    ]
    assert statuses == [401] * 4 + [429, 429]
    # The MCP endpoint shares the budget: its 401 is a 429 now too.
    mcp = httpx.post(
        f"{b}/mcp", headers={"Authorization": "Bearer tnx_nope", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10,
    )
    assert mcp.status_code == 429 and mcp.json()["error"]["code"] == "rate_limited"
    assert int(mcp.headers["Retry-After"]) > 0
