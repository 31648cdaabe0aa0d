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

Two things daphne leaves to the application are settled here, before Django sees the request or
after it answered: a body sent without Content-Length (`Transfer-Encoding: chunked`) is read under
a size bound and given the Content-Length it turned out to have, so Django and DRF read it (and
apply their limits) as any other body; and a `HEAD` answer is its status and headers only (daphne
writes every body chunk after the first, so a streamed or large body would follow the headers).
"""

from __future__ import annotations

import asyncio
import tempfile
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

from workspaces.compat import forget_resource_closer
from workspaces.errors import json_error_response


class BodyTooLarge(Exception):
    pass


NO_BODY = {"type": "http.response.body", "body": b"", "more_body": False}


def largest_body() -> int:
    """The most any route reads: an upload at its limit with room for its multipart framing."""
    return settings.TENEX_MAX_UPLOAD_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def has_content_length(scope) -> bool:
    return any(name.lower() == b"content-length" for name, _ in scope.get("headers", ()))


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
            body_file, size = await self.read_bounded_body(receive)
        except RequestAborted:
            return
        except BodyTooLarge:
            too_large = json_error_response(413, "payload_too_large", "Request body is too large.")
            await (self._send_headers_only if scope["method"] == "HEAD" else self.send_response)(too_large, send)
            return
        loop = asyncio.get_running_loop()
        try:
            if size and not has_content_length(scope):  # chunked: Django and DRF read no body without a length
                scope = {**scope, "headers": [*scope.get("headers", ()), (b"content-length", str(size).encode())]}
            response = await loop.run_in_executor(self._threads, self._respond, scope, body_file)
            if scope["method"] == "HEAD":
                await self._send_headers_only(response, send)
                if response.streaming:
                    await loop.run_in_executor(self._threads, response.close)
                return
            if not response.streaming:
                await self.send_response(response, send)  # closed already, on its thread
                return
            try:
                await self._stream(response, receive, send)
            finally:
                await loop.run_in_executor(self._threads, response.close)  # request_finished
        finally:
            body_file.close()

    async def read_bounded_body(self, receive) -> tuple[tempfile.SpooledTemporaryFile, int]:
        """The request body and its size, as Django's `read_body` reads it but never past the most
        any route reads (BodyTooLarge), with or without a Content-Length."""
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")
        limit, size = largest_body(), 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestAborted()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge()
                body_file.write(chunk)
                if not message.get("more_body", False):
                    break
        except BaseException:
            body_file.close()
            raise
        body_file.seek(0)
        return body_file, size

    async def _send_headers_only(self, response, send) -> None:
        """A HEAD answer: the response's status and headers; its body is never produced or sent."""
        if response.streaming:
            response.streaming_content = ()  # the stream's iterator never starts

        async def start_only(message) -> None:
            if message["type"] == "http.response.start":
                await send(message)

        await self.send_response(response, start_only)
        await send(NO_BODY)

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
                forget_resource_closer(response, request.close)
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
