"""Cancelling a reply, from any thread of any process, and the listening side of it.

`request_cancel` stops the reply at once when this process produces it; with Redis it also sets
the message's cancel mark (the producer's next append answers CANCEL_REQUESTED, so a notice lost
to a Redis blip still stops it) and publishes the message id on `cancel_channel()`, which every
process's `listen_for_cancels` hears. A cancel heard before the reply started here is remembered
for a while (`cancel_was_requested`), so the start finds it. `cancel_and_wait` is what the cancel
endpoint calls: the signal, then the wait until the reply has ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from typing import Any, Protocol

from django.conf import settings

from chat.stream.log import cancel_key
from tenex.outages import log_failure

logger = logging.getLogger(__name__)

# Cancels heard for replies not (yet) produced here, kept for their start to find; past this many,
# the older half is forgotten.
EARLY_CANCELS_KEPT = 10_000


def cancel_channel() -> str:
    """The pub/sub channel of cancel notices (one per deployment)."""
    return f"{settings.TENEX_REDIS_PREFIX}:cancel"


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class CancelBus:
    """Carries cancel signals to the process producing a reply and stops it there."""

    def __init__(
        self, *, loop: asyncio.AbstractEventLoop, redis_url: str, sync_redis: Callable[[], Any],
        active: Mapping[str, Cancellable],
        await_ending: Callable[[str, str, str], Coroutine[Any, Any, None]],
    ) -> None:
        self.loop = loop  # the runtime's loop, where `active` changes and replies are stopped
        self.redis_url = redis_url
        self.sync_redis = sync_redis
        self.active = active
        self.await_ending = await_ending
        self._early_cancels: dict[str, float] = {}

    def request_cancel(self, message_id: str) -> None:
        """Ask whichever process produces this message to stop (safe to call from any thread)."""
        self.loop.call_soon_threadsafe(self.cancel_local, message_id)
        if self.redis_url:
            client = self.sync_redis()
            client.set(cancel_key(message_id), "1", ex=3600)
            client.publish(cancel_channel(), message_id)

    def cancel_and_wait(self, workspace_id: str, message_id: str) -> None:
        """Ask the producer to stop and wait until the reply has ended (`cancelled`, or its own
        ending); from a request thread. Raises ConnectionError when Redis cannot carry the signal."""
        from tenex.redis_clients import STORE_ERRORS

        try:
            self.request_cancel(message_id)
        except STORE_ERRORS as exc:
            raise ConnectionError(str(exc)) from exc
        wait = asyncio.run_coroutine_threadsafe(self.await_ending(workspace_id, message_id, "cancelled"), self.loop)
        wait.result(timeout=3 * settings.TENEX_STREAM_LEASE_SECONDS + 5)

    def cancel_local(self, message_id: str) -> None:
        """On the runtime loop: stop the reply if it is produced here, else remember the cancel."""
        generation = self.active.get(message_id)
        if generation is not None:
            generation.cancel()
            return
        # The cancel may beat the generation's start on this loop: remember it for a while.
        self._early_cancels[message_id] = time.monotonic()
        if len(self._early_cancels) > EARLY_CANCELS_KEPT:
            oldest = sorted(self._early_cancels, key=self._early_cancels.get)[: EARLY_CANCELS_KEPT // 2]
            for stale in oldest:
                self._early_cancels.pop(stale, None)

    def cancel_was_requested(self, message_id: str) -> bool:
        """Whether a cancel of this reply arrived before it started here (asked once, at its start).

        One this process missed (its pub/sub notice lost to a Redis blip) stops the reply at its
        next append, which sees the cancel mark."""
        return self._early_cancels.pop(message_id, None) is not None

    async def listen_for_cancels(self) -> None:
        """On the runtime loop, for the process's life: stop the replies other processes cancel."""
        from tenex.redis_clients import ready_async_client

        while True:
            # A client per attempt (its connections from before a Redis restart are dead), closed
            # with the attempt: one left open at each retry of an outage would outlive it.
            client = None
            try:
                client = await ready_async_client(self.redis_url)  # on a cluster, PUBLISH reaches every node
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(cancel_channel())
                    # Notices published while we were not subscribed (Redis restarting) are lost;
                    # the cancel marks are not: a reply with no append to come soon must not miss one.
                    for message_id in list(self.active):
                        if await client.exists(cancel_key(message_id)):
                            self.cancel_local(message_id)
                    async for item in pubsub.listen():
                        if item.get("type") == "message":
                            data = item["data"]
                            self.cancel_local(data.decode() if isinstance(data, bytes) else data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening through Redis restarts
                log_failure(logger, "cancel listener lost Redis; retrying", exc=exc)
                await asyncio.sleep(1)
            finally:
                if client is not None:
                    with suppress(Exception):
                        await client.aclose()
