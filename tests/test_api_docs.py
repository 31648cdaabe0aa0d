"""The API docs pages: assets from the pinned sidecar, no CDN, no inline script or style."""

from __future__ import annotations

import re

import pytest
from django.test import Client


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_only_their_own_files(url):
    response = Client().get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "://" not in html  # no CDN, no web fonts: every asset is a path on this server
    assert "<style" not in html and "style=" not in html
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="' in attributes and not body.strip() for attributes, body in scripts)
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert Client().get(src).status_code == 200, src


def test_swagger_start_up_script_is_served_as_javascript():
    html = Client().get("/api/docs/").content.decode()
    script_url = re.search(r'<script src="(/api/docs/\?[^"]*script[^"]*)"', html).group(1).replace("&amp;", "&")
    response = Client().get(script_url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in response.content and b"/api/v1/schema/" in response.content
