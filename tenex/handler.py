"""Django under ASGI, each request's synchronous part in one call on a shared pool of threads.

Django's own ASGI handler runs the middleware in async mode: every hook of a synchronous
middleware (all of Django's are) hops from the event loop to the request's thread and back, about
fifteen hops a request here (5 ms of an idle server's time for `/healthz`, most of it waiting), and
that thread, one per request, lives as long as the response: an SSE stream keeps it for minutes.

This handler loads the middleware chain in synchronous mode and runs `request_started`, the chain
and the view in one call on `TENEX_REQUEST_THREADS` shared threads, then gives the thread's
database connection back and sends the body from the event loop. Streaming bodies (SSE) stream
there, with the client's disconnect cancelling them as in Django's handler, and hold no thread;
their request is closed once the view has returned (a streaming body must not read the request).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections
from django.http import FileResponse
from django.urls import set_script_prefix


class PooledThreadASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self._threads = ThreadPoolExecutor(
            max_workers=settings.TENEX_REQUEST_THREADS, thread_name_prefix="tenex-request"
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(self._threads, self._respond, scope, body_file)
            if not response.streaming:
                await self.send_response(response, send)  # closed already, on its thread
                return
            try:
                await self._stream(response, receive, send)
            finally:
                await loop.run_in_executor(self._threads, response.close)  # request_finished
        finally:
            body_file.close()

    def _respond(self, scope, body_file):
        """On a pool thread: the request from start to response, its database connection given back."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = error_response if request is None else self.get_response(request)
        response._handler_class = self.__class__
        if response.streaming:
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
            if request is not None:
                # The view has read what it needs: close the request now rather than when the body
                # ends, so an open stream does not keep it (headers, body, user, scope) alive.
                with suppress(ValueError):
                    response._resource_closers.remove(request.close)
                request.close()
            # The body streams from the event loop: this thread moves on, its connection goes back.
            close_old_connections()
        else:
            response.close()  # request_finished here, on the thread that used the connection
        return response

    async def _stream(self, response, receive, send) -> None:
        """Send a streaming body; a client that disconnects cancels it (its iterator is closed)."""
        sending = asyncio.current_task()
        gone = False

        async def listen() -> None:
            nonlocal gone
            with suppress(RequestAborted):
                await self.listen_for_disconnect(receive)
            gone = True
            sending.cancel()

        listening = asyncio.ensure_future(listen())
        try:
            await self.send_response(response, send)
        except asyncio.CancelledError:
            if not gone:
                raise  # cancelled from outside (the server is stopping), not by the client leaving
        finally:
            if not listening.done():
                listening.cancel()
                with suppress(asyncio.CancelledError):
                    await listening
            if gone:
                sending.uncancel()  # the cancel this function asked for is spent, whenever it landed
