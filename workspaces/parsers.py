"""Request bodies as the API reads them: JSON is UTF-8 (RFC 8259) and nested at most MAX_JSON_DEPTH deep.

`JSONParser` is REST_FRAMEWORK's only JSON parser; `loads_bounded` and `check_depth` are the same
rules for JSON that reaches the API another way (MCP tool arguments). OPTIONS answers through
`Metadata`.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.metadata import SimpleMetadata

# Deep enough for any real body (a JSON Schema in an agent's input_schema included), shallow enough
# that nothing that walks a value recursively (validation, serialization) comes near Python's limit.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels."


class JsonTooDeep(ValueError):
    pass


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise JsonTooDeep when arrays and objects nest deeper than `limit` (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            raise JsonTooDeep(TOO_DEEP)
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON.")


def loads_bounded(raw: bytes | str) -> Any:
    """Parse JSON text (bytes are UTF-8, whatever a header says): ValueError when it is not valid
    JSON or not UTF-8, JsonTooDeep when it nests too deep. NaN and Infinity are refused."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # deeper than the parser itself goes: deeper than our limit too
        raise JsonTooDeep(TOO_DEEP) from None
    if isinstance(value, (dict, list)):
        check_depth(value)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, reading UTF-8 whatever charset the Content-Type names, with the depth limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        try:
            return loads_bounded(raw)
        except JsonTooDeep as exc:
            raise ParseError(str(exc)) from None
        except UnicodeDecodeError:
            raise ParseError("JSON parse error - the body is not valid UTF-8.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class Metadata(SimpleMetadata):
    """OPTIONS: what a route renders and parses, without DRF's per-action form description.

    DRF describes actions from `get_serializer()` and, for PUT, `get_object()`; the views here
    validate with their own request schemas (and the brand profile has no `pk`), so that description
    was wrong at best and a 500 at worst. The OpenAPI schema describes every operation.
    """

    def determine_metadata(self, request, view):
        return {
            "name": view.get_view_name(),
            "description": view.get_view_description(),
            "renders": [renderer.media_type for renderer in view.renderer_classes],
            "parses": [parser.media_type for parser in view.parser_classes],
            "schema": "/api/v1/schema/",
        }
