"""schemathesis hooks for tests/test_fuzz_openapi.py (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI schema says what each value may look like; a few rules depend on the server's state or
on a signature, and no schema can say them. For a value generated as valid, these hooks give it
its one valid form before the call, so that "a valid request was refused" means the schema and the
service disagree, not that the fuzzer guessed a signature or reused a unique name:

- `cursor` is signed by the server: a valid one only comes from a `next`/`previous` link.
- `user_id` must be the key's own user for a personal key (TENEX_FUZZ_USER_ID).
- `Idempotency-Key` with another body is a 422 by design: each valid send gets its own key.
- an agent's `slug` is unique in the workspace, and so is one derived from its `name`.
- an agent's `input_schema` must be a valid JSON Schema of an object (or {}).
- an uploaded file's declared type, extension and bytes must agree: `format: binary` values are
  UTF-8 text here (the schema's encoding names the part `notes.txt`, `text/plain`), where
  schemathesis would otherwise send PNG, GIF or ZIP samples that the allow-list refuses (415).
  They are drawn as text, not bytes: schemathesis re-checks a case a hook changed, and counts any
  body holding bytes as invalid.
A value that breaks the schema, or any value of a part generated to break it, is left as generated:
the service must refuse it.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
import uuid
from collections import Counter
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation

schemathesis.openapi.format("binary", st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1))
USER_ID = os.environ.get("TENEX_FUZZ_USER_ID", "")
SLUG = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


def _valid_text(value: object, max_length: int = 64) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length and "\x00" not in value


def _fresh() -> str:
    return uuid.uuid4().hex[:12]


def _generated_invalid(case, location: ParameterLocation) -> bool:
    meta = case.meta
    return meta is not None and meta.is_negative_at(location)


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    path, method = case.operation.path, case.method.upper()
    query, headers, body = case.query, case.headers, case.body
    if isinstance(query, dict) and not _generated_invalid(case, ParameterLocation.QUERY):
        cursor = query.get("cursor")
        if isinstance(cursor, str) and "\x00" not in cursor:
            del query["cursor"]
        if _valid_text(query.get("user_id")):
            query["user_id"] = USER_ID
    if headers is not None and not _generated_invalid(case, ParameterLocation.HEADER):
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
            headers["Idempotency-Key"] = f"fuzz-{_fresh()}"
    if not isinstance(body, dict) or _generated_invalid(case, ParameterLocation.BODY):
        return
    if _valid_text(body.get("user_id")):
        body["user_id"] = USER_ID
    if path.startswith("/api/v1/agents") and method in ("POST", "PATCH"):
        slug = body.get("slug")
        if ("slug" not in body and method == "POST") or (isinstance(slug, str) and SLUG.fullmatch(slug)):
            body["slug"] = f"fuzz-{_fresh()}"
        if isinstance(body.get("input_schema"), dict):
            body["input_schema"] = {"type": "object", "properties": {"topic": {"type": "string"}}}


# --- what the service answered, for the test's summary ---------------------------------------------
_statuses: Counter[int] = Counter()
_lock = threading.Lock()


@schemathesis.hook
def after_call(context, case, response) -> None:
    with _lock:
        _statuses[response.status_code] += 1


@atexit.register
def _write_statuses() -> None:
    target = os.environ.get("TENEX_FUZZ_STATUSES")
    if target:
        Path(target).write_text(json.dumps({str(code): count for code, count in sorted(_statuses.items())}))


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but one the service cannot answer: a `multipart/form-data` upload whose
    body holds no part at all is refused by daphne's HTTP layer (Twisted) with a bare 400 before the
    application sees it (README, production notes)."""
    return not (
        case.operation.path == "/api/v1/chat/files"
        and response.status_code == 400
        and not response.content
        and "multipart/form-data" in (case.media_type or "")
        and not case.body
    )
