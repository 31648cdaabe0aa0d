"""`Idempotency-Key` for sending messages: scoped to the workspace and acting user, kept 24 h.

A retry with the same key and body gets the original answer and creates nothing; a different body
is a 422; a retry while the first request has not committed is a 409. On PostgreSQL a
transaction-scoped advisory lock on the key tells "in flight" apart without waiting; on SQLite
writes are serialised, so a retry simply waits for the first request and then replays it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from chat.models import IdempotencyRecord
from workspaces.errors import ApiError
from workspaces.tenancy import Scope, unique_or_none

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


def validate_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not (1 <= len(raw) <= MAX_KEY_LENGTH) or not raw.isascii() or not raw.isprintable():
        raise ApiError(400, "invalid_request", "Idempotency-Key must be 1 to 255 printable ASCII characters.")
    return raw


def request_fingerprint(thread_id: str, body: object) -> str:
    canonical = json.dumps(
        {"thread_id": thread_id, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _principal(scope: Scope) -> str:
    return scope.user_id or scope.key_id or "session"


def idempotency_begin(*, scope: Scope, key: str, fingerprint: str) -> dict | None:
    """Inside the request's transaction: the stored answer to replay, or None to go ahead."""
    principal = _principal(scope)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"idempotency|{scope.workspace_id}|{principal}|{key}"],
            )
            if not cursor.fetchone()[0]:
                raise ApiError(
                    409, "idempotency_in_flight", "A request with this Idempotency-Key is still in progress."
                )
    record = unique_or_none(
        IdempotencyRecord.objects.for_workspace(scope.workspace_id).filter(principal=principal, key=key)
    )
    if record is not None and record.expires_at <= timezone.now():
        record.delete()
        record = None
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise ApiError(
            422, "idempotency_key_reused", "This Idempotency-Key was already used with a different request body."
        )
    if record.response is None:
        raise ApiError(409, "idempotency_in_flight", "A request with this Idempotency-Key is still in progress.")
    if isinstance(record.response, str):  # the answer's JSON text, its keys in their first order
        return json.loads(record.response)
    return record.response


def idempotency_record(*, scope: Scope, key: str, fingerprint: str, thread_id: str, response: dict) -> None:
    now = timezone.now()
    IdempotencyRecord.objects.create(
        workspace_id=scope.workspace_id,
        principal=_principal(scope),
        key=key,
        request_hash=fingerprint,
        thread_id=thread_id,
        # Kept as JSON text (a JSON string in the column): PostgreSQL's jsonb reorders an object's
        # keys, and a replay must render byte for byte as the first answer did.
        response=json.dumps(response, ensure_ascii=False),
        created_at=now,
        expires_at=now + TTL,
    )
