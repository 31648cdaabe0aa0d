"""ASGI entry point: `/mcp` (the MCP endpoint) and everything else through Django, by Channels' router.

Django runs under `tenex.handler.PooledThreadASGIHandler` (its synchronous part in one call per
request on a shared thread pool) rather than Django's stock ASGI handler.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenex.settings")

import django

django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path

from tenex.handler import PooledThreadASGIHandler

django_asgi_app = PooledThreadASGIHandler()

from chat.mcp.http import mcp_endpoint
from chat.stream.runtime import get_runtime

# The generation runtime starts with the server, so its sweep ends replies that a previous
# process left streaming even before the first request arrives.
get_runtime()

application = ProtocolTypeRouter(
    {"http": URLRouter([path("mcp", mcp_endpoint), re_path(r"", django_asgi_app)])}
)
