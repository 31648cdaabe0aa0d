"""Shared fixtures: a workspace with alice and bob, an outsider's workspace, and keys of each kind."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory, issue_key
from workspaces.models import Membership, User, Workspace


@pytest.fixture(scope="session", autouse=True)
def generation_runtime_stops_before_the_test_database_goes(django_db_setup, django_db_blocker):
    """The runtime's sweep runs on its own thread: stop it while the test database still exists."""
    yield
    from chat.stream import runtime

    if runtime._runtime is not None:
        runtime._runtime.shutdown()


@pytest.fixture(autouse=True)
def replies_end_before_the_database_is_flushed(_django_db_helper):
    """Replies a test started go on in the background; let them end before the tables are emptied
    (a finalize racing the flush's TRUNCATE deadlocks, and would write into the next test)."""
    yield
    from chat.stream import runtime

    if runtime._runtime is None:
        return
    deadline = time.monotonic() + 20
    while runtime._runtime.active and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(scope="session", autouse=True)
def server_processes_count_apart():
    """Server processes the tests start (they inherit the environment) keep their counters under
    this run's own prefix: other runs on the same Redis, at the same time, count elsewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TENEX_CACHE_PREFIX", f"tenex:cache:test-run-{uuid.uuid4().hex[:12]}")
        yield


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A private Redis Cluster (3 masters, 3 replicas) for the tests that ask for it, started once."""
    from tests.processes import redis_cluster as start_cluster

    with start_cluster(str(tmp_path_factory.mktemp("redis-cluster"))) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def fresh_cache_namespace(settings):
    """Each test counts rate limits and failed sign-ins from zero, under a key prefix of its own
    (the shared Redis is never flushed: other test runs use it at the same time)."""
    default = dict(settings.CACHES["default"])
    default["KEY_PREFIX"] = f"{default.get('KEY_PREFIX', '')}:test-{uuid.uuid4().hex[:16]}"
    settings.CACHES = {**settings.CACHES, "default": default}


@dataclass
class Member:
    user: User
    key: str
    client: APIClient

    @property
    def id(self) -> str:
        return self.user.pk


def make_client(key: str | None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def make_member(workspace: Workspace, email: str, role=Membership.Role.MEMBER) -> Member:
    user = UserFactory(email=email)
    MembershipFactory(workspace=workspace, user=user, role=role)
    key = issue_key(workspace, user)
    return Member(user=user, key=key, client=make_client(key))


@pytest.fixture
def workspace(db) -> Workspace:
    return WorkspaceFactory(slug="acme", name="Acme")


@pytest.fixture
def other_workspace(db) -> Workspace:
    return WorkspaceFactory(slug="globex", name="Globex")


@pytest.fixture
def alice(workspace) -> Member:
    return make_member(workspace, "alice@acme.test", Membership.Role.OWNER)


@pytest.fixture
def bob(workspace) -> Member:
    return make_member(workspace, "bob@acme.test")


@pytest.fixture
def outsider(other_workspace) -> Member:
    return make_member(other_workspace, "eve@globex.test", Membership.Role.OWNER)


@pytest.fixture
def service_key(workspace) -> str:
    return issue_key(workspace, None)


@pytest.fixture
def service_client(service_key) -> APIClient:
    return make_client(service_key)


@pytest.fixture
def read_only_key(workspace, alice) -> str:
    return issue_key(workspace, alice.user, scopes=["chat:read", "knowledge:read", "agents:read"])


@pytest.fixture
def read_only_client(read_only_key) -> APIClient:
    return make_client(read_only_key)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()
