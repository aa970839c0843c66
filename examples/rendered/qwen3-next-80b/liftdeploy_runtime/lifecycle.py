"""A request's lifetime in the server: its time limit, and the drain when the container stops
(an ASGI middleware loaded with vLLM's --middleware, standard library only).

Time limit: vLLM has no per-request limit and Modal's `@app.server` takes no timeout, so a
request past LIFTDEPLOY_REQUEST_TIMEOUT_S is cancelled here. vLLM aborts a cancelled request in
the engine, which frees its slot; the caller gets a JSON 504 (or, once a stream has started, the
stream ends).

Drain: `ServerProcess.stop` creates the file named by LIFTDEPLOY_DRAIN_FILE before it stops the
server. From then on a new request gets a JSON 503 with `Retry-After` and `Connection: close`
(clients and Modal retry elsewhere), while the requests already in flight run to completion;
`/health` answers 503 with the number still in flight, which `stop` watches to know when the
server is idle and safe to end.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REQUEST_TIMEOUT_ENV = "LIFTDEPLOY_REQUEST_TIMEOUT_S"
"""Seconds one request may run (the spec's runtime.request_timeout_s); unset: no limit."""
DRAIN_FILE_ENV = "LIFTDEPLOY_DRAIN_FILE"
"""Path whose existence means: the server is stopping; finish what is in flight, take nothing
new."""
PROBE_PATHS = frozenset({"/health", "/metrics", "/ping"})
"""Probes: never limited, never counted as requests in flight."""
RETRY_AFTER_S = 1
"""What a request refused during the drain is told to wait before retrying (elsewhere)."""


class RequestLifecycle:
    """Cancels a request past its time limit (504) and drains the server when it stops (503)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.timeout_s = _seconds(os.environ.get(REQUEST_TIMEOUT_ENV))
        self.drain_file = os.environ.get(DRAIN_FILE_ENV) or None
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        draining = self.drain_file is not None and os.path.exists(self.drain_file)
        if path in PROBE_PATHS:
            if draining and path == "/health":
                await _reply(send, 503, {"status": "draining", "in_flight": self.in_flight},
                             [(b"retry-after", str(RETRY_AFTER_S).encode())])
                return
            await self.app(scope, receive, send)
            return
        if draining:
            await _reply(send, 503, _error(
                "the server is shutting down (scale-down or deploy) and takes no new requests; "
                "retry, another container answers", "ServiceUnavailable", 503),
                [(b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")])
            return
        self.in_flight += 1
        try:
            await self._limited(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.timeout_s is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            # Cancelling the handler makes vLLM abort the request in the engine: its slot frees.
            await asyncio.wait_for(self.app(scope, receive, tracking_send), self.timeout_s)
        except asyncio.TimeoutError:
            if started:  # a stream is under way: all that can be done is to end it
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await _reply(send, 504, _error(
                f"the request ran longer than the service's limit of {self.timeout_s:g} s "
                f"(runtime.request_timeout_s) and was stopped; ask for fewer tokens "
                f"(max_tokens) or raise the limit", "RequestTimeout", 504), [])


def _seconds(value: str | None) -> float | None:
    """A positive number of seconds from the environment, or None (no limit) when unset."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{REQUEST_TIMEOUT_ENV}={value!r} is not a number of seconds; "
                         f"set it to a positive number such as 1200, or unset it") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{REQUEST_TIMEOUT_ENV}={value!r} must be a positive, finite number "
                         f"of seconds; set it to a value such as 1200, or unset it")
    return seconds


def _error(message: str, kind: str, status: int) -> dict[str, Any]:
    """vLLM's (OpenAI's) error shape, so clients parse it like the server's own errors."""
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


async def _reply(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
