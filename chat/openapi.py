"""OpenAPI for the chat API: what the schema cannot learn from the serializers alone."""

from __future__ import annotations

from chat.files import ALLOWED_TYPES


def postprocess(result: dict, generator, request, public) -> dict:
    """SPECTACULAR_SETTINGS postprocessing hook: an upload's `file` part names the types it may have
    (its declared type, extension and bytes must agree) and shows a file name with its extension."""
    upload = result.get("paths", {}).get("/api/v1/chat/files", {}).get("post")
    form = (upload or {}).get("requestBody", {}).get("content", {}).get("multipart/form-data")
    if form is not None:
        form["encoding"] = {
            "file": {
                "contentType": ", ".join(ALLOWED_TYPES),
                "headers": {
                    "Content-Disposition": {
                        "schema": {"type": "string", "example": 'form-data; name="file"; filename="notes.txt"'}
                    }
                },
            }
        }
    return result
