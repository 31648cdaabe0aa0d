"""Rate limits: the shared sliding-window counter, the client address, and the per-address limit on
requests that fail authentication (every 401 counts; past the limit, 429 before any key lookup)."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings as django_settings
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import make_client
from tests.helpers import assert_error
from workspaces import keys
from workspaces.models import ApiKey
from workspaces.ratelimit import Rate, RateCounter, client_address

URL = "/api/v1/workspace"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def local_cache() -> LocMemCache:
    return LocMemCache(f"rate-{uuid.uuid4().hex}", {})


def redis_cache() -> RedisCache:
    return RedisCache(django_settings.REDIS_URL, {"KEY_PREFIX": f"test-rate-{uuid.uuid4().hex}"})


@pytest.fixture(params=["locmem", "redis"])
def cache(request):
    return local_cache() if request.param == "locmem" else redis_cache()


def test_exactly_the_limit_is_allowed_and_refusals_are_not_counted(cache):
    clock = Clock(600_000 * 60 + 1.0)  # one second into a minute window
    counter, rate = RateCounter(cache, clock), Rate.parse("5/min")
    assert [counter.hit("alice", rate) for _ in range(5)] == [None] * 5
    wait = counter.hit("alice", rate)
    # Next window, 12 s in: 5 * (1 - 12/60) + 1 = 5 requests in the last minute.
    assert wait == pytest.approx(59.0 + 12.0)
    assert counter.peek("alice", rate) == pytest.approx(wait)
    for _ in range(20):
        assert counter.hit("alice", rate) is not None
    # Refusals took their increment back: in the next window, at the same point, the five of this
    # one weigh 5 * (1 - 1/60) and one more request fits.
    assert counter.hit("bob", rate) is None  # other identities count apart
    clock.now += 60
    assert counter.peek("alice", rate) is not None  # 4.92 + 1 > 5
    clock.now += 11.01  # 12 s in: 5 * 48/60 = 4, so one fits
    assert counter.peek("alice", rate) is None
    assert counter.hit("alice", rate) is None
    assert counter.hit("alice", rate) is not None


def test_the_window_edge_allows_no_double_burst(cache):
    clock = Clock(600_000 * 60 + 59.0)
    counter, rate = RateCounter(cache, clock), Rate.parse("10/min")
    assert all(counter.hit("k", rate) is None for _ in range(10))
    clock.now += 2  # 1 s into the next window: a fixed window would allow 10 more now
    wait = counter.hit("k", rate)
    assert wait == pytest.approx(5.0)  # 10 * (1 - 6/60) + 1 = 10 fits at 6 s in
    clock.now += wait + 0.01
    assert counter.hit("k", rate) is None
    assert counter.hit("k", rate) is not None


def test_redis_counts_expire_with_their_window():
    cache = redis_cache()
    counter = RateCounter(cache, Clock(1_000_000.0))
    counter.hit("ttl", Rate.parse("3/min"))
    [key] = [k for k in cache._cache.get_client().keys(f"{cache.key_prefix}*")]
    assert 0 < cache._cache.get_client().ttl(key) <= 120


def request_from(remote: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_the_client_address_is_remote_addr_unless_proxies_are_trusted(settings):
    assert client_address(request_from("203.0.113.7", "198.51.100.1")) == "203.0.113.7"
    settings.TENEX_TRUSTED_PROXY_COUNT = 1
    # The client may send its own X-Forwarded-For; the proxy appends what it saw, and that counts.
    assert client_address(request_from("10.0.0.2", "1.2.3.4, 198.51.100.1")) == "198.51.100.1"
    settings.TENEX_TRUSTED_PROXY_COUNT = 2
    assert client_address(request_from("10.0.0.2", "1.2.3.4, 198.51.100.1, 10.0.0.9")) == "198.51.100.1"
    assert client_address(request_from("10.0.0.2", "10.0.0.9")) == "10.0.0.2"  # fewer hops than proxies


def test_ipv6_clients_count_by_their_64_network(settings):
    assert client_address(request_from("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_address(request_from("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"
    assert client_address(request_from("::ffff:192.0.2.5")) == "192.0.2.5"


# --- Requests that fail authentication, through the API -----------------------------------------------
@pytest.fixture
def bad_requests(alice, workspace):
    """One of each kind of 401: missing, malformed, unknown and revoked keys."""
    from workspaces.services import api_key_create, api_key_revoke

    revoked = api_key_create(workspace=workspace, user=alice.user)
    api_key_revoke(api_key=revoked.api_key)
    return [None, "tnx_nope", keys.generate_key(), revoked.secret]


@pytest.mark.django_db
def test_failed_authentications_are_limited_per_address_with_429_and_retry_after(alice, bad_requests, settings):
    settings.TENEX_ANON_RATE_LIMIT = "4/min"
    statuses = [make_client(key).get(URL).status_code for key in bad_requests]
    assert statuses == [401, 401, 401, 401]
    for key in bad_requests:
        error = assert_error(make_client(key).get(URL), 429, "rate_limited")
        assert "throttled" in error["message"].lower()
    response = make_client(None).get(URL)
    assert 15 <= int(response["Retry-After"]) <= 75  # when 3 of the 4 have slid out of the last minute
    # Another address has its own budget.
    assert_error(make_client(None).get(URL, REMOTE_ADDR="198.51.100.20"), 401, "unauthorized")


@pytest.mark.django_db
def test_a_blocked_address_is_refused_before_any_query_even_with_a_right_key(alice, settings):
    settings.TENEX_ANON_RATE_LIMIT = "2/min"
    for _ in range(2):
        assert_error(make_client(keys.generate_key()).get(URL), 401)
    for key in (keys.generate_key(), alice.key, "tnx_nope"):
        with CaptureQueriesContext(connection) as queries:
            response = make_client(key).get(URL)
        assert_error(response, 429, "rate_limited")
        statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]  # the request's transaction
        assert statements == [], key  # no key lookup: a right key cannot be told apart from a wrong one
    assert alice.client.get(URL, REMOTE_ADDR="198.51.100.21").status_code == 200


@pytest.mark.django_db
def test_authenticated_requests_do_not_use_the_address_budget(alice, settings):
    settings.TENEX_ANON_RATE_LIMIT = "2/min"
    assert all(alice.client.get(URL).status_code == 200 for _ in range(6))
    assert [make_client(None).get(URL).status_code for _ in range(3)] == [401, 401, 429]


@pytest.mark.django_db
def test_a_revoked_key_keeps_answering_401_until_the_address_limit(alice, settings):
    settings.TENEX_ANON_RATE_LIMIT = "3/min"
    ApiKey.objects.filter(user=alice.user).update(revoked_at=timezone.now())
    assert [alice.client.get(URL).status_code for _ in range(4)] == [401, 401, 401, 429]


@pytest.mark.django_db
def test_the_key_limit_counts_per_key(alice, bob, settings):
    settings.TENEX_RATE_LIMIT = "3/min"
    assert [alice.client.get(URL).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert bob.client.get(URL).status_code == 200
    response = alice.client.get(URL)
    assert_error(response, 429, "rate_limited")
    assert 20 <= int(response["Retry-After"]) <= 80


def test_an_unreachable_redis_lets_requests_through_uncounted():
    from tests.helpers import free_port

    dead = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {"OPTIONS": {"socket_connect_timeout": 1}})
    counter = RateCounter(dead)
    assert counter.hit("k", Rate.parse("1/min")) is None
    assert counter.hit("k", Rate.parse("1/min")) is None
    assert counter.peek("k", Rate.parse("1/min")) is None
