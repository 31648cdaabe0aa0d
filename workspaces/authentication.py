"""Request authentication: a Bearer API key or a Django session, each turned into a request Scope."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from workspaces.keys import digest_matches, parse_key
from workspaces.models import ApiKey, Membership
from workspaces.tenancy import ALL_SCOPES, Scope, unique_or_none
from workspaces.throttling import refuse_if_address_blocked

LAST_USED_RESOLUTION = timedelta(minutes=1)
UNAUTHORIZED_MESSAGE = "Missing or invalid API key."


class KeyPrincipal:
    """request.user for API-key requests: the personal key's user id, or none for a service key."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key: ApiKey):
        self.key = key
        self.pk = self.id = key.user_id

    def __str__(self) -> str:
        return self.key.prefix


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed(UNAUTHORIZED_MESSAGE)
        # Refused before any query when the shape or the checksum is wrong.
        parsed = parse_key(raw.strip())
        if parsed is None:
            raise exceptions.AuthenticationFailed(UNAUTHORIZED_MESSAGE)
        # An address past its budget of failed authentications is refused before the lookup too.
        refuse_if_address_blocked(request)
        key = unique_or_none(
            ApiKey.objects.filter(prefix=parsed.prefix).annotate(workspace_search_config=F("workspace__search_config"))
        )
        if key is None or not digest_matches(parsed.raw, key.secret_hash) or not key.is_usable():
            raise exceptions.AuthenticationFailed(UNAUTHORIZED_MESSAGE)
        self._touch(key)
        scope = Scope(
            workspace_id=key.workspace_id,
            user_id=key.user_id,
            scopes=frozenset(key.scopes),
            key_id=key.id,
            is_service=key.is_service,
            search_config=key.workspace_search_config,
        )
        return KeyPrincipal(key), scope

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'

    @staticmethod
    def _touch(key: ApiKey) -> None:
        # Written at most once a minute per key: a hot key must not turn every read into a write.
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now


# --- Django session (the web UI) ------------------------------------------------------------------
SESSION_WORKSPACE_KEY = "tenex_workspace_id"
NO_WORKSPACE_MESSAGE = "Your account is not a member of any workspace."


def user_memberships(user) -> QuerySet[Membership]:
    """The user's memberships, oldest first (the first is the default workspace)."""
    return Membership.objects.filter(user_id=user.pk).select_related("workspace").order_by("created_at", "id")


def session_membership(user, session) -> Membership | None:
    """The membership a browser session acts in: the one chosen in the session, else the oldest."""
    memberships = user_memberships(user)
    chosen = session.get(SESSION_WORKSPACE_KEY)
    if chosen:
        # A choice the user has since lost (membership removed) falls back to the default.
        found = memberships.filter(workspace_id=chosen).first()
        if found is not None:
            return found
    return memberships.first()


def membership_scope(membership: Membership) -> Scope:
    """A member's own Scope in that workspace: what their personal key with every scope gets."""
    return Scope(
        workspace_id=membership.workspace_id,
        user_id=membership.user_id,
        scopes=frozenset(ALL_SCOPES),
        key_id=None,
        is_service=False,
        search_config=membership.workspace.search_config,
    )


class SessionScopeAuthentication(authentication.SessionAuthentication):
    """A logged-in Django session acts as its user in the session's workspace; CSRF on unsafe methods.

    Runs after ApiKeyAuthentication: a request with an Authorization header is judged by the key
    alone, so a bad key is a 401 even with a valid session cookie.
    """

    def authenticate(self, request):
        if "HTTP_AUTHORIZATION" in request.META:
            return None
        user = getattr(request._request, "user", None)
        if user is None or not user.is_authenticated or not user.is_active:
            return None
        self.enforce_csrf(request)
        membership = session_membership(user, request._request.session)
        if membership is None:
            raise exceptions.PermissionDenied(NO_WORKSPACE_MESSAGE)
        return user, membership_scope(membership)


class SessionScopeScheme(OpenApiAuthenticationExtension):
    """The session cookie the web UI uses (unsafe methods also need the `X-CSRFToken` header)."""

    target_class = "workspaces.authentication.SessionScopeAuthentication"
    name = "SessionCookie"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "A Django session from the web UI login; unsafe methods need `X-CSRFToken`.",
        }
