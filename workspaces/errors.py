"""One error shape for every 4xx and 5xx: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
)
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from workspaces.throttling import count_failed_authentication

logger = logging.getLogger(__name__)

NOT_FOUND_BODY = {"error": {"code": "not_found", "message": "Not found.", "fields": None}}

_CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid_request",
    status.HTTP_401_UNAUTHORIZED: "unauthorized",
    status.HTTP_403_FORBIDDEN: "forbidden",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: "payload_too_large",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_422_UNPROCESSABLE_ENTITY: "unprocessable",
    status.HTTP_429_TOO_MANY_REQUESTS: "rate_limited",
    status.HTTP_503_SERVICE_UNAVAILABLE: "unavailable",
}


class ApiError(exceptions.APIException):
    """An error with an explicit status and code, e.g. ApiError(409, "idempotency_in_flight", "...")."""

    def __init__(self, status_code: int, code: str, message: str, fields: dict | None = None):
        self.status_code = status_code
        self.error_code = code
        self.fields = fields
        super().__init__(detail=message, code=code)


class ReferenceNotFound(Exception):
    """A service was given an id that is not visible in its scope; answered as the plain 404."""


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


# What a 503 tells a client to wait before trying again.
RETRY_AFTER_SECONDS = 2


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; nothing was changed. Try again shortly."
    default_code = "unavailable"


def error_body(code: str, message: str, fields: dict | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields}}


def _flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field": [messages]}, nested fields joined with dots."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for name, value in detail.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            flat.update(_flatten_fields(value, key))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            flat[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    flat.update(_flatten_fields(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "non_field_errors"] = [str(detail)]
    return flat


def _shape(exc: exceptions.APIException) -> dict[str, Any]:
    status_code = exc.status_code
    if isinstance(exc, ApiError):
        return error_body(exc.error_code, str(exc.detail), exc.fields)
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return error_body("unauthorized", "Missing or invalid API key.")
    if isinstance(exc, exceptions.NotFound):
        return NOT_FOUND_BODY
    if isinstance(exc, exceptions.ParseError):
        return error_body("invalid_json", str(exc.detail))
    code = _CODES.get(status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten_fields(exc.detail)
        general = fields.pop("non_field_errors", None)
        message = " ".join(general) if general else "Some fields are invalid."
        if not fields:
            return error_body(code, message)
        return error_body(code, message if general else "Some fields are invalid.", fields)
    detail = exc.detail
    message = str(detail) if not isinstance(detail, (dict, list)) else "Request failed."
    return error_body(code, message)


def _unauthenticated_or_throttled(exc: exceptions.APIException, request) -> exceptions.APIException:
    """A 401 counts against the client's address; past `TENEX_ANON_RATE_LIMIT` it is a 429."""
    wait = count_failed_authentication(request)
    return exc if wait is None else exceptions.Throttled(wait)


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, TooManyFieldsSent):
        exc = exceptions.ValidationError("Too many fields.")
    elif isinstance(exc, (Http404, ReferenceNotFound)):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)) and context.get("request"):
        exc = _unauthenticated_or_throttled(exc, context["request"])
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = _shape(exc)
    if response.status_code == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def json_error_response(status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def handler404(request, exception=None):
    return JsonResponse(NOT_FOUND_BODY, status=404)


def handler500(request):
    return json_error_response(500, "server_error", "Internal server error.")


def handler400(request, exception=None):
    return json_error_response(400, "invalid_request", "Bad request.")


def handler403(request, exception=None):
    return json_error_response(403, "forbidden", "You do not have permission to perform this action.")


__all__ = [
    "ApiError", "PayloadTooLarge", "RETRY_AFTER_SECONDS", "ServiceUnavailable", "Response", "error_body",
    "exception_handler",
]
