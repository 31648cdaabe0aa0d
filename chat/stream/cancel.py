"""Cancelling a reply from a request thread: signal every process, then wait for the ending."""

from __future__ import annotations

from django.conf import settings

from chat.stream.runtime import get_runtime
from tenex.redis_clients import STORE_ERRORS


def cancel_and_wait(workspace_id: str, message_id: str) -> None:
    """Ask the producer to stop and wait until the reply has ended (`cancelled`, or its own ending).

    Raises ConnectionError when the stream store cannot carry the signal.
    """
    runtime = get_runtime()
    try:
        runtime.request_cancel(message_id)
    except STORE_ERRORS as exc:
        raise ConnectionError(str(exc)) from exc
    wait = runtime.submit(runtime.await_ending(workspace_id, message_id, "cancelled"))
    wait.result(timeout=3 * settings.TENEX_STREAM_LEASE_SECONDS + 5)
