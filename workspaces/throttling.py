"""Per-key request rate limit (429 with Retry-After)."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from workspaces.tenancy import Scope


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        auth = request.auth
        if not isinstance(auth, Scope):
            return None
        ident = auth.key_id or f"session:{auth.user_id}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
