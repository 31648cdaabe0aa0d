"""Bearer API key authentication: turns `Authorization: Bearer tnx_...` into a request Scope."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from workspaces.keys import digest_matches, parse_key
from workspaces.models import ApiKey
from workspaces.tenancy import Scope

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
        key = ApiKey.objects.filter(prefix=parsed.prefix).first()
        if key is None or not digest_matches(parsed.raw, key.secret_hash) or not key.is_usable():
            raise exceptions.AuthenticationFailed(UNAUTHORIZED_MESSAGE)
        self._touch(key)
        scope = Scope(
            workspace_id=key.workspace_id,
            user_id=key.user_id,
            scopes=frozenset(key.scopes),
            key_id=key.id,
            is_service=key.is_service,
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
