"""OpenAPI for the chat API: what the schema cannot learn from the serializers alone."""

from __future__ import annotations


def postprocess(result: dict, generator, request, public) -> dict:
    """SPECTACULAR_SETTINGS postprocessing hook: an upload's `file` part shows one consistent way to
    send it (a `.txt` name, `text/plain`); the field's description lists every allowed type, whose
    declared type, extension and bytes must agree (OpenAPI cannot tie a part's type to its name)."""
    upload = result.get("paths", {}).get("/api/v1/chat/files", {}).get("post")
    form = (upload or {}).get("requestBody", {}).get("content", {}).get("multipart/form-data")
    if form is not None:
        form["encoding"] = {
            "file": {
                "contentType": "text/plain",
                "headers": {
                    "Content-Disposition": {
                        "schema": {"type": "string", "example": 'form-data; name="file"; filename="notes.txt"'}
                    }
                },
            }
        }
    return result
