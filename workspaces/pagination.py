"""Keyset (seek) cursor pagination in DRF's CursorPagination shape.

The cursor carries the sort key of the last row seen (for example `(activity_at, id)`), signed so a
tampered cursor is a 400. Each page is one index range scan, so page 50,000 costs what page 1 does,
and equal timestamps are broken by the unique last key: every row appears exactly once.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django.core import signing
from django.db import connection, models
from django.db.models.expressions import RawSQL
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

CURSOR_SALT = "tenex.cursor.v1"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class InvalidCursor(exceptions.ValidationError):
    pass


def _encode_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class KeysetPagination(BasePagination):
    """`view.ordering` names the sort, e.g. ("-activity_at", "-id"); the last key must be unique."""

    cursor_query_param = "cursor"
    limit_query_param = "limit"

    def __init__(self):
        self.has_next = False
        self.has_previous = False
        self.first_key = None
        self.last_key = None

    # --- parsing ------------------------------------------------------------------------------
    def get_limit(self, request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return DEFAULT_LIMIT
        # ASCII digits only: int() would also take " 5", "5_0" and other scripts' digits, which
        # the schema's integer does not describe. Any larger number is clamped, however long.
        digits = raw.lstrip("0")
        if not (raw.isascii() and raw.isdigit()) or not digits:
            raise exceptions.ValidationError({"limit": ["limit must be an integer from 1 to 100."]})
        return MAX_LIMIT if len(digits) > 3 else min(int(digits), MAX_LIMIT)

    def decode_cursor(self, request, fields: list[models.Field]) -> tuple[str, list] | None:
        raw = request.query_params.get(self.cursor_query_param)
        if raw is None or raw == "":
            return None
        bad = InvalidCursor({"cursor": ["The cursor is invalid."]})
        if len(raw) > 2048:
            raise bad
        try:
            payload = signing.loads(raw, salt=CURSOR_SALT)
        except (signing.BadSignature, ValueError, UnicodeDecodeError):
            raise bad from None
        if (
            not isinstance(payload, dict)
            or payload.get("d") not in {"n", "p"}
            or not isinstance(payload.get("k"), list)
            or len(payload["k"]) != len(fields)
            or payload.get("o") != self.ordering_signature
        ):
            raise bad
        values = []
        for field, value in zip(fields, payload["k"], strict=True):
            if isinstance(field, models.DateTimeField):
                value = parse_datetime(value) if isinstance(value, str) else None
                if value is None:
                    raise bad
            values.append(value)
        return payload["d"], values

    def encode_cursor(self, direction: str, key: list) -> str:
        payload = {"d": direction, "k": [_encode_value(v) for v in key], "o": self.ordering_signature}
        return signing.dumps(payload, salt=CURSOR_SALT, compress=True)

    # --- querying -----------------------------------------------------------------------------
    def _seek(self, queryset: models.QuerySet, fields, values, *, after: bool, descending: bool):
        """Rows strictly after (or before) the key in the sort, as one row-value comparison."""
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        columns = ", ".join(f"{table}.{connection.ops.quote_name(f.column)}" for f in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        forward_is_less = descending
        less = forward_is_less if after else not forward_is_less
        operator = "<" if less else ">"
        params = [self._adapt(field, value) for field, value in zip(fields, values, strict=True)]
        condition = RawSQL(f"({columns}) {operator} ({placeholders})", params, output_field=models.BooleanField())
        return queryset.filter(condition)

    @staticmethod
    def _adapt(field, value):
        if isinstance(field, models.DateTimeField):
            return connection.ops.adapt_datetimefield_value(value)
        return value

    def paginate_queryset(self, queryset, request, view=None):
        if view is not None and hasattr(view, "get_pagination_ordering"):
            ordering = list(view.get_pagination_ordering())
        else:
            ordering = list(getattr(view, "ordering", None) or queryset.query.order_by)
        descending = ordering[0].startswith("-")
        names = [o.lstrip("-") for o in ordering]
        fields = [queryset.model._meta.get_field(name) for name in names]
        backward = [name if descending else f"-{name}" for name in names]

        def fetch(seek, count):
            if seek is None:
                return list(queryset.order_by(*ordering)[:count])
            values, after = seek
            page = self._seek(queryset, fields, values, after=after, descending=descending)
            return list(page.order_by(*(ordering if after else backward))[:count])

        def key(row):
            return [getattr(row, f.attname) for f in fields]

        return self.paginate(request, ordering, fields, fetch, key=key)

    def paginate(self, request, ordering, fields: list[models.Field], fetch, *, key) -> list:
        """One page of what `fetch(seek, count)` reads: `count` rows in `ordering` from the start (seek None),
        or after (`(values, True)`) or, in reverse order, before (`(values, False)`) the sort key `values`."""
        self.request = request
        self.ordering_signature = ",".join(ordering)
        descending = ordering[0].startswith("-")
        if any(o.startswith("-") != descending for o in ordering):
            raise ValueError("KeysetPagination needs every ordering field in the same direction")
        self.names = [o.lstrip("-") for o in ordering]
        limit = self.get_limit(request)
        cursor = self.decode_cursor(request, fields)

        if cursor is None:
            rows = fetch(None, limit + 1)
            self.has_next = len(rows) > limit
            rows = rows[:limit]
            self.has_previous = False
        else:
            direction, values = cursor
            if direction == "n":
                rows = fetch((values, True), limit + 1)
                self.has_next = len(rows) > limit
                rows = rows[:limit]
                self.has_previous = True
            else:
                rows = fetch((values, False), limit + 1)
                self.has_previous = len(rows) > limit
                rows = list(reversed(rows[:limit]))
                self.has_next = True
        if rows:
            self.first_key = key(rows[0])
            self.last_key = key(rows[-1])
        elif cursor is not None:
            # An empty page reached by a cursor: offer the way back to where it came from.
            self.first_key = self.last_key = cursor[1]
        return rows

    # --- links --------------------------------------------------------------------------------
    def _link(self, direction: str, key) -> str:
        params = self.request.query_params.copy()
        params[self.cursor_query_param] = self.encode_cursor(direction, key)
        return self.request.build_absolute_uri(self.request.path) + "?" + urlencode(list(params.lists()), doseq=True)

    def get_next_link(self) -> str | None:
        if not self.has_next or self.last_key is None:
            return None
        return self._link("n", self.last_key)

    def get_previous_link(self) -> str | None:
        if not self.has_previous or self.first_key is None:
            return None
        return self._link("p", self.first_key)

    def get_paginated_response(self, data):
        return Response({"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque cursor from a previous page's `next` or `previous` link.",
                "schema": {"type": "string"},
            },
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": "Items per page, 1 to 100 (default 20; larger values are clamped to 100).",
                "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT},
            },
        ]
