"""A database that cannot be reached is a 503 to the client, not a 500."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse

from tenex.database_breaker import breaker
from workspaces.errors import RETRY_AFTER_SECONDS, ServiceUnavailable, json_error_response

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Answers 503 with `Retry-After` when a view fails because PostgreSQL is unreachable, restarting,
    out of connections, or the process's pool had none free in time (all `OperationalError`s, as
    are a deadlock or a cancelled statement, which a retry also resolves). The request's transaction
    was rolled back: nothing was changed.

    Such a failure also makes the process check whether PostgreSQL is down (`tenex.database_breaker`);
    while it is known down, requests answer 503 at once instead of each waiting for a connection."""

    # Answered without the database, outage or not.
    NO_DATABASE_PATHS = ("/healthz", "/static/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if breaker.open and not request.path.startswith(self.NO_DATABASE_PATHS):
            return self.unavailable(request)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
        breaker.suspect()
        return self.unavailable(request)

    @staticmethod
    def unavailable(request) -> HttpResponse:
        if request.path.startswith(("/api/", "/mcp")):
            unavailable = ServiceUnavailable()
            response = json_error_response(503, unavailable.default_code, str(unavailable.detail))
        else:
            response = HttpResponse(
                "The service is briefly unavailable. Try again in a moment.", status=503, content_type="text/plain"
            )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
