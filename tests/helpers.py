"""Small assertions shared by the API tests."""

from __future__ import annotations

from workspaces.errors import NOT_FOUND_BODY


def assert_not_found(response) -> None:
    assert response.status_code == 404, (response.status_code, getattr(response, "content", b"")[:500])
    assert response.json() == NOT_FOUND_BODY


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def collect_pages(client, url: str, limit: int = 7) -> list[dict]:
    items: list[dict] = []
    separator = "&" if "?" in url else "?"
    response = client.get(f"{url}{separator}limit={limit}")
    while True:
        assert response.status_code == 200, response.content[:500]
        body = response.json()
        items.extend(body["results"])
        if not body["next"]:
            return items
        response = client.get(body["next"])
