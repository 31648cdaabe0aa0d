"""Sign-in throttling for the web UI (`/login`) and the admin (`/admin/login/`), with django-axes.

Axes counts failed sign-ins per account and per client address in the default cache (Redis with
`REDIS_URL`, so every process shares the counts), refuses further attempts once either reaches
`TENEX_LOGIN_FAILURE_LIMIT` (its authentication backend runs first and stops before any password
is checked), and forgets them `TENEX_LOGIN_COOLOFF_MINUTES` after the last failure; a successful
sign-in clears the counts of its account and address. It hooks `django.contrib.auth.authenticate`
only: the API's Bearer keys and its session authentication never call it.
"""

from __future__ import annotations

import logging
import math

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache, get_cool_off
from django.core.cache.backends.base import BaseCache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from tenex.redis_clients import STORE_ERRORS

logger = logging.getLogger(__name__)


def login_account(request: HttpRequest, credentials: dict | None) -> str:
    """The account a sign-in attempt is counted against: the email as the login forms compare it.

    Emails are stored lower-case and the forms ignore case and surrounding spaces, so `Pat@x` and
    `pat@x ` count as one account. A value with no `@` cannot be an account's email; it is marked so
    that it never equals an address (axes keys both kinds by their bare value).
    """
    raw = None
    if credentials:
        raw = credentials.get("username") or credentials.get("email")
    if raw is None:
        raw = request.POST.get("username", "")
    email = str(raw).strip().lower()
    return email if "@" in email else f"not-an-email:{email}"


class LoginAttemptHandler(AxesCacheHandler):
    """Axes' cache handler; while Redis is unreachable, sign-ins go on uncounted rather than fail."""

    def __init__(self) -> None:
        pass  # no cache kept: `cache` below looks it up per call, as Django keeps one per thread

    @property
    def cache(self) -> BaseCache:
        return get_cache()

    def get_failures(self, request, credentials: dict | None = None) -> int:
        try:
            return super().get_failures(request, credentials)
        except STORE_ERRORS as exc:
            logger.warning("sign-in failures not read, Redis unreachable: %s", exc)
            return 0

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        try:
            super().user_login_failed(sender, credentials, request, **kwargs)
        except STORE_ERRORS as exc:
            logger.warning("sign-in failure not counted, Redis unreachable: %s", exc)

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        try:
            super().user_logged_in(sender, request, user, **kwargs)
        except STORE_ERRORS as exc:
            logger.warning("sign-in failures not cleared, Redis unreachable: %s", exc)


def lockout_response(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None):
    """429 "too many attempts, try again in N minutes", on the sign-in page the attempt came from."""
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 0
    admin = request.path.startswith(reverse("admin:index"))
    context = {
        "minutes": max(1, math.ceil(seconds / 60)),
        "back_url": reverse("admin:login") if admin else reverse("login"),
        "title": "Too many sign-in attempts",
    }
    response = render(request, "registration/locked_out.html", context, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
