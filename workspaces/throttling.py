"""Request rate limits, answered 429 with `Retry-After`: per API key (or session), and per client
address for requests that fail authentication (see workspaces.ratelimit for the counting)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from workspaces.ratelimit import Rate, RateCounter, client_address, retry_after
from workspaces.tenancy import Scope

counter = RateCounter()


class ApiKeyRateThrottle(BaseThrottle):
    """`TENEX_RATE_LIMIT` requests per API key (a browser session counts as its user)."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request, view) -> bool:
        auth = request.auth
        if not isinstance(auth, Scope):
            return True
        ident = f"key:{auth.key_id}" if auth.key_id else f"session:{auth.user_id}"
        self._wait = counter.hit(ident, Rate.parse(settings.TENEX_RATE_LIMIT))
        return self._wait is None

    def wait(self) -> int | None:
        return None if self._wait is None else retry_after(self._wait)


# --- Requests that fail authentication, per client address -----------------------------------------
def _unauthenticated_ident(request) -> str | None:
    address = client_address(request)
    return None if address is None else f"unauthenticated:{address}"


def refuse_if_address_blocked(request) -> None:
    """Raise Throttled (429) when the request's address has used up its failed-authentication budget.

    Called before an API key is looked up, so a flood of wrong keys from one address costs no
    database query once it is over the limit, and cannot tell a right key from a wrong one.
    """
    ident = _unauthenticated_ident(request)
    if ident is None:
        return
    wait = counter.peek(ident, Rate.parse(settings.TENEX_ANON_RATE_LIMIT))
    if wait is not None:
        raise exceptions.Throttled(retry_after(wait))


def count_failed_authentication(request) -> int | None:
    """Count a 401 against the request's address: None, or the seconds of the 429 it becomes."""
    ident = _unauthenticated_ident(request)
    if ident is None:
        return None
    wait = counter.hit(ident, Rate.parse(settings.TENEX_ANON_RATE_LIMIT))
    return None if wait is None else retry_after(wait)
