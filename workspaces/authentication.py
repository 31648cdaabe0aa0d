"""Request authentication: a Bearer API key or a Django session, each turned into a request Scope."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, QuerySet
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from workspaces.keys import digest_matches, parse_key
from workspaces.models import ApiKey, Membership, Workspace
from workspaces.tenancy import ALL_SCOPES, RLS_SETTING, Scope, unique_or_none
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


# The scoped viewsets (workspaces.viewsets) authenticate inside the request's transaction and set
# its row-level-security workspace right after. With SETS_DATABASE_WORKSPACE true on the request,
# the key's lookup sets it in the same statement, for a key that authenticates (its digest, not
# revoked, not expired, judged in SQL exactly as in Python), and DATABASE_WORKSPACE_SET on the
# request names the workspace it set: one round trip fewer on every API request.
SETS_DATABASE_WORKSPACE = "tenex_sets_database_workspace"
DATABASE_WORKSPACE_SET = "tenex_database_workspace_set"
_KEY_FIELDS = list(ApiKey._meta.concrete_fields)
_KEY_COLUMNS = ", ".join(f'k."{field.column}"' for field in _KEY_FIELDS)
_KEY_SETTING_WORKSPACE_SQL = (
    f'SELECT {_KEY_COLUMNS}, w."search_config", CASE WHEN k."secret_hash" = %s AND k."revoked_at" IS NULL '
    f'AND (k."expires_at" IS NULL OR k."expires_at" > %s) THEN set_config(%s, k."workspace_id", true) '
    f'END FROM "{ApiKey._meta.db_table}" k JOIN "{Workspace._meta.db_table}" w ON w."id" = k."workspace_id" '
    'WHERE k."prefix" = %s'
)


def _key_setting_workspace(parsed, now) -> ApiKey | None:
    """PostgreSQL: the key with this prefix, read in one statement with its workspace's search
    configuration; the statement also sets the workspace for row-level security when the key
    authenticates (`database_workspace` on the key: the workspace set, or None)."""
    with connection.cursor() as cursor:
        cursor.execute(_KEY_SETTING_WORKSPACE_SQL, [parsed.digest, now, RLS_SETTING, parsed.prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    count = len(_KEY_FIELDS)
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(_KEY_FIELDS, row[:count], strict=True)
    ]
    key = ApiKey.from_db(connection.alias, [field.attname for field in _KEY_FIELDS], values)
    key.workspace_search_config, key.database_workspace = row[count], row[count + 1]
    return key


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
        now = timezone.now()
        sets_workspace = getattr(request, SETS_DATABASE_WORKSPACE, False) and connection.vendor == "postgresql"
        if sets_workspace:
            key = _key_setting_workspace(parsed, now)
        else:
            key = unique_or_none(
                ApiKey.objects.filter(prefix=parsed.prefix).annotate(
                    workspace_search_config=F("workspace__search_config")
                )
            )
        if key is None or not digest_matches(parsed.raw, key.secret_hash) or not key.is_usable(now):
            raise exceptions.AuthenticationFailed(UNAUTHORIZED_MESSAGE)
        if sets_workspace and key.database_workspace == key.workspace_id:
            setattr(request, DATABASE_WORKSPACE_SET, key.workspace_id)
        self._touch(key, now)
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
    def _touch(key: ApiKey, now) -> None:
        # Written at most once a minute per key: a hot key must not turn every read into a write.
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
