"""Fixtures for the web UI: browser-like clients logged in through a Django session."""

from __future__ import annotations

import pytest
from django.test import Client

from workspaces.models import User

PASSWORD = "correct horse battery staple"


def session_client(user: User, *, enforce_csrf: bool = False) -> Client:
    """A client with `user` logged in; with enforce_csrf, unsafe requests need the CSRF token."""
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def csrf_token(client: Client) -> str:
    """The token a page hands its scripts: rendering any page sets the `csrftoken` cookie."""
    client.get("/chat/")
    return client.cookies["csrftoken"].value


@pytest.fixture
def alice_browser(alice) -> Client:
    return session_client(alice.user)
