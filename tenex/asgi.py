"""ASGI entry point: HTTP (API, SSE streams, admin, pages) through Channels' protocol router."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tenex.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from chat.stream.runtime import get_runtime  # noqa: E402

# The generation runtime starts with the server, so its sweep ends replies that a previous
# process left streaming even before the first request arrives.
get_runtime()

application = ProtocolTypeRouter({"http": django_asgi_app})
