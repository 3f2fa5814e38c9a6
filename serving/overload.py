"""Overload control of the API: a bound on in-flight requests per process and a time budget per request.

`OverloadGuard` is a pure ASGI middleware (no `BaseHTTPMiddleware`: that one runs the app in a
task it always waits for, so an abandoned request could not be let go). A request that finds
`max_concurrency` requests in flight is answered 503 with `Retry-After` at once, instead of
queueing behind work that cannot finish in time. An admitted request that has not started its
response within `timeout_seconds`, or whose client went away, is abandoned: its task is cancelled
(work still waiting for a worker thread never starts; a handler already running in a thread cannot
be interrupted: it runs to its end outside the bound and its result is dropped), its slot is freed,
and a timed-out client gets 503.
Exempt paths (`/healthz`) bypass both, so liveness answers while the workers are saturated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Collection
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("retention.serving")

RETRY_AFTER_SECONDS = 1  # a client retrying this much later meets a drained queue (requests take ms)
MAX_BODY_BYTES = 1 << 20  # bodies are buffered to watch for a disconnect; the API's are forms of a few bytes


class OverloadGuard:
    """Bound the requests in flight in this process; refuse the excess and abandon the ones over budget.

    Args:
        app: the wrapped ASGI app.
        max_concurrency: requests handled at once in this process; the next one is 503 at once.
        timeout_seconds: an admitted request must start its response within this (else 503).
        exempt: paths answered without the bound or the budget (cheap routes that must stay up).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_concurrency: int,
        timeout_seconds: float,
        exempt: Collection[str] = ("/healthz",),
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.app = app
        self.max_concurrency = max_concurrency
        self.timeout_seconds = timeout_seconds
        self.exempt = frozenset(exempt)
        self.in_flight = 0  # only the event loop's thread touches it: no lock needed
        self.refused = 0
        self.abandoned = 0
        self._orphans: set[asyncio.Task[None]] = set()  # abandoned tasks, kept referenced until they end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency:
            self.refused += 1
            await _unavailable(send, f"the server is at capacity ({self.max_concurrency} requests in flight)")
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_seconds):  # a client trickling its body holds a slot
                body = await _read_body(receive)
        except TimeoutError:
            await _unavailable(send, "the request body did not arrive within the request's budget")
            return
        if body is None:  # the client left before sending its request
            return
        if sum(len(m.get("body", b"")) for m in body) > MAX_BODY_BYTES:
            await send_problem(send, 413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
            return
        gone = asyncio.Event()
        response_started = False
        abandoned = False

        async def replay() -> Message:
            if body:
                return body.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if abandoned:  # the client has had its 503 or has left: the late result is dropped
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.ensure_future(self.app(scope, replay, guarded_send))
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
        try:
            while not task.done():
                remaining = max(0.0, self.timeout_seconds - (time.monotonic() - started))
                await asyncio.wait({task, watcher}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if task.done() or response_started:
                    break
                client_left = watcher.done()
                if client_left or time.monotonic() - started >= self.timeout_seconds:
                    abandoned = True
                    self._abandon(task, scope, "the client left" if client_left else "over the time budget")
                    if not client_left:
                        budget = f"{self.timeout_seconds:g}s"
                        await _unavailable(send, f"the request did not finish within its {budget} budget")
                    return
            await task  # done, or streaming its response: wait for the rest, re-raise its error
        finally:
            watcher.cancel()

    def _abandon(self, task: asyncio.Task[None], scope: Scope, why: str) -> None:
        self.abandoned += 1
        task.cancel()
        self._orphans.add(task)
        task.add_done_callback(self._forget)
        log.warning("abandoned %s %s: %s", scope["method"], scope["path"], why)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._orphans.discard(task)
        if not task.cancelled() and task.exception() is not None:  # retrieved, so asyncio does not warn
            log.debug("an abandoned request failed afterwards", exc_info=task.exception())


async def _read_body(receive: Receive) -> list[Message] | None:
    """The request's body messages (None: the client disconnected first)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        messages.append(message)
        if not message.get("more_body", False):
            return messages


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:  # the client left (or its connection failed): the app's own receive() learns it too
        gone.set()


async def _unavailable(send: Send, detail: str) -> None:
    await send_problem(send, 503, detail, {"retry-after": str(RETRY_AFTER_SECONDS)})


async def send_problem(send: Send, code: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer a request with `code` and a JSON `{"detail": ...}` body, straight on the ASGI channel."""
    body = json.dumps({"detail": detail}).encode()
    raw: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": code, "headers": raw})
    await send({"type": "http.response.body", "body": body})
