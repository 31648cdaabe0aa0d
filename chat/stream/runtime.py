"""The generation runtime: one background event loop per process, and the parts that run on it.

A reply never runs inside an HTTP request's coroutine. `start` hands the message to this loop after
the request's transaction committed. The parts, each in its own module:

- `Producer` (producer.py): runs each reply (a `Generation`, generation.py) from its input to its
  recorded ending;
- `EventFlusher` (flusher.py): writes the events of every reply to the stream log, batched;
- `LeaseKeeper` (leases.py): checkpoints and leases, the sweep, the endings of orphaned replies;
- `CancelBus` (cancel.py): cancel signals from any process.

This module only builds them and hosts them: the loop and its thread, the thread pools for
database steps and tools, a synchronous Redis client for request threads, and the orderly exit.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from functools import partial
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections

from chat.prompt import GenerationInput
from chat.stream.cancel import CancelBus
from chat.stream.flusher import EventFlusher
from chat.stream.generation import Generation
from chat.stream.leases import LeaseKeeper
from chat.stream.log import get_stream_log
from chat.stream.producer import Producer
from tenex.database_breaker import breaker
from tenex.outages import log_failure
from workspaces.compat import register_before_thread_pools_close

logger = logging.getLogger(__name__)


class GenerationRuntime:
    def __init__(self) -> None:
        self.producer_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.log = get_stream_log()
        self.redis_url = settings.REDIS_URL
        self.active: dict[str, Generation] = {}  # the replies produced here, by message id
        self._tasks: set[asyncio.Task] = set()
        self._stopped = False
        # Database steps, and (the loop's default executor) the tools' synchronous work: sized in
        # settings so that, with every other thread that may hold a connection, they fit the pool.
        self._db = ThreadPoolExecutor(
            max_workers=settings.TENEX_GENERATION_DB_THREADS, thread_name_prefix="tenex-generation-db"
        )
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(
            ThreadPoolExecutor(max_workers=settings.TENEX_TOOL_THREADS, thread_name_prefix="tenex-tools")
        )
        self.leases = LeaseKeeper(
            producer_id=self.producer_id, log=self.log, redis_url=self.redis_url, sync_redis=self.redis,
            active=self.active, db=self.db, spawn=self.spawn,
        )
        self.cancels = CancelBus(
            loop=self.loop, redis_url=self.redis_url, sync_redis=self.redis, active=self.active,
            await_ending=self.leases.await_ending,
        )
        self.producer = Producer(
            producer_id=self.producer_id, log=self.log, flusher=EventFlusher(self.log), leases=self.leases,
            cancels=self.cancels, active=self.active, db=self.db, spawn=self.spawn,
        )
        self._thread = threading.Thread(target=self._run_loop, name="tenex-generation", daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait()

    # --- the loop -----------------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self._sweeper = self.spawn(self.leases.sweep_forever())
        self._checkpointer = self.spawn(self.leases.checkpoint_forever())
        if self.redis_url:
            self.spawn(self.cancels.listen_for_cancels())
        self.loop.run_forever()

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task:
        """Start a task on the runtime loop (from the loop's own thread) and keep a reference to it."""
        task = asyncio.ensure_future(coroutine, loop=self.loop)
        # The loop holds tasks only weakly: without a reference a pending task can be collected.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def submit(self, coroutine) -> asyncio.Future[Any]:
        """Run a coroutine on the runtime loop from any thread or loop."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def db(self, function: Callable, *args: Any) -> Any:
        """Run a synchronous database step on the runtime's own worker threads."""
        return await self.loop.run_in_executor(self._db, partial(self._db_call, function, *args))

    @staticmethod
    def _db_call(function: Callable, *args: Any) -> Any:
        close_old_connections()
        try:
            return breaker.call(function, *args)  # refused at once while PostgreSQL is known down
        finally:
            if connections["default"].vendor == "postgresql":
                connections["default"].close()  # back to the pool between steps

    def redis(self):
        """A synchronous Redis client for callers outside the loop (views): the process's one client
        for the configured URL."""
        from tenex.redis_clients import shared_sync_client

        return shared_sync_client(settings.REDIS_URL or self.redis_url, socket_connect_timeout=2, socket_timeout=5)

    # --- starting a reply ---------------------------------------------------------------------
    def start(self, workspace_id: str, message_id: str, loaded: GenerationInput) -> None:
        """Produce a reply this process leased at insert (`chat.prompt.generation_input` read its
        input); from the request thread, after its transaction committed."""
        try:
            self.leases.track_new(workspace_id, message_id)
        except Exception as exc:  # noqa: BLE001 - readers still end it by its database lease
            log_failure(logger, "could not record the lease of %s in Redis", message_id, exc=exc)
        # Before the request that sent the message starts reading it: its reader waits here, not in Redis.
        self.log.expect(message_id)
        self.loop.call_soon_threadsafe(lambda: self.spawn(self.producer.generate(workspace_id, message_id, loaded)))

    # --- exit ---------------------------------------------------------------------------------
    def drain(self, seconds: float) -> None:
        """At exit: let the replies in progress finish for up to `seconds`, then end the rest as
        `interrupted` at once (their readers get `error` now, not when the lease lapses)."""
        # No more sweeps: the thread pools they need close right after this. Wait until the loop
        # has stopped the sweeper (a sweep it was about to start would find the pools closed).
        self._stop_task(self._sweeper)
        try:
            deadline = time.monotonic() + seconds
            while self.active and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.active:
                return
            logger.warning("ending %d replies still in progress as interrupted", len(self.active))
            self.loop.call_soon_threadsafe(self._stop_all)
            deadline = time.monotonic() + 5
            while self.active and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            # The checkpointer renewed the leases of the replies that were finishing; nothing is left
            # but to take the replies that ended since its last round off the sweep's list.
            self._stop_task(self._checkpointer)
            with suppress(Exception):
                self.submit(self.leases.forget_ended_leases()).result(timeout=2)

    def _stop_task(self, task: asyncio.Task) -> None:
        """Cancel one of the loop's own tasks from another thread and wait (briefly) until it has ended."""

        async def stop() -> None:
            task.cancel()
            with suppress(BaseException):
                await task

        with suppress(Exception):
            self.submit(stop()).result(timeout=2)

    def _stop_all(self) -> None:
        for generation in self.active.values():
            generation.stop_for_exit()

    def shutdown(self) -> None:
        """Stop the loop's tasks and the loop (at interpreter exit); once."""
        if self._stopped:
            return
        self._stopped = True

        async def stop_tasks() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with suppress(Exception):
            self.submit(stop_tasks()).result(timeout=2)
        self.loop.call_soon_threadsafe(self.loop.stop)


_runtime: GenerationRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> GenerationRuntime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = GenerationRuntime()
            # Before the interpreter stops thread pools (concurrent.futures refuses new work from
            # then on, and the replies' database steps need it): finish what is in progress.
            register_before_thread_pools_close(partial(_runtime.drain, settings.TENEX_SHUTDOWN_DRAIN_SECONDS))
            atexit.register(_runtime.shutdown)
        return _runtime
