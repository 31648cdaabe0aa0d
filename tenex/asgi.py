"""ASGI entry point: `/mcp` (the MCP endpoint) and everything else through Django, by Channels' router."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenex.settings")

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path, re_path

django_asgi_app = get_asgi_application()

from chat.mcp.http import mcp_endpoint
from chat.stream.runtime import get_runtime

# The generation runtime starts with the server, so its sweep ends replies that a previous
# process left streaming even before the first request arrives.
get_runtime()

application = ProtocolTypeRouter(
    {"http": URLRouter([path("mcp", mcp_endpoint), re_path(r"", django_asgi_app)])}
)
