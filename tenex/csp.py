"""The Content-Security-Policy middleware: django-csp's, with one allowance for the ReDoc page."""

from __future__ import annotations

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts

# URL names of pages whose own scripts insert <style> elements as they run, and start their
# search as a worker from a blob: URL (ReDoc, rendered with styled-components): their policy also
# allows inline styles and those workers. Scripts stay 'self' everywhere.
REDOC_VIEWS = frozenset({"redoc"})
REDOC_ALLOWANCES = {"style-src": [UNSAFE_INLINE], "worker-src": ["'self'", "blob:"]}


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.url_name in REDOC_VIEWS:
            parts.update = {**(parts.update or {}), **REDOC_ALLOWANCES}
        return parts
