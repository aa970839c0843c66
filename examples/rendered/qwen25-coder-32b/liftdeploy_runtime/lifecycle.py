"""A request's lifetime in the server: its time limit, and the drain when the container stops
(an ASGI middleware loaded with vLLM's --middleware; standard library only, and Starlette,
which vLLM serves with, for CORS).

Time limit: vLLM has no per-request limit and Modal's `@app.server` takes no timeout, so a
request past LIFTDEPLOY_REQUEST_TIMEOUT_S is stopped here. Cancelling the call would not stop
the engine: vLLM runs each handler as its own task (`with_cancellation`) and aborts a request
only when it sees the client leave, as an `http.disconnect` from `receive` (so does Starlette's
streaming response). So at the limit the inner app's `receive` says the client left, vLLM aborts
the request in the engine and frees its slot, and then the caller gets a JSON 504 (or, once a
stream has started, an error event and `data: [DONE]`).

Drain: `ServerProcess.stop` creates the file named by LIFTDEPLOY_DRAIN_FILE before it stops the
server. From then on a new request gets a JSON 503 with `Retry-After` and `Connection: close`
(clients and Modal retry elsewhere), while the requests already in flight run to completion;
`/health` answers 503 with the number still in flight, which `stop` watches to know when the
server is idle and safe to end.

CORS: vLLM adds its CORS middleware before any `--middleware`, so it is the innermost layer and
the answers of liftdeploy's own middlewares (this one's 503 and 504, the API-key gate's 401 and
413, the guard's 400 and 502) would reach a browser without CORS headers: an opaque failure.
This middleware is the outermost (the last `--middleware`), so with LIFTDEPLOY_ALLOWED_ORIGINS
set it wraps itself in Starlette's CORSMiddleware with vLLM's settings: every answer carries
the headers, and preflights are answered before any other layer.
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
ALLOWED_ORIGINS_ENV = "LIFTDEPLOY_ALLOWED_ORIGINS"
"""A JSON list of the origins browsers may call from (the spec's cors.allowed_origins); unset:
no CORS headers (vLLM's own --allowed-origins is unset too)."""
ABORT_WAIT_S = 10.0
"""How long a request past its limit is given to abort in the engine after it is told the
client left; a handler that ignores that is cancelled instead."""


class RequestLifecycle:
    """Cancels a request past its time limit (504) and drains the server when it stops (503)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.timeout_s = _seconds(os.environ.get(REQUEST_TIMEOUT_ENV))
        self.drain_file = os.environ.get(DRAIN_FILE_ENV) or None
        self.in_flight = 0
        self._entry: Callable[[Scope, Receive, Send], Awaitable[None]] = self._handle
        origins = _origins(os.environ.get(ALLOWED_ORIGINS_ENV))
        if origins:
            from starlette.middleware.cors import CORSMiddleware  # vLLM's own dependency

            # vLLM's defaults for its own CORS layer (--allowed-methods/-headers: *).
            self._entry = CORSMiddleware(
                self._handle, allow_origins=origins, allow_methods=["*"], allow_headers=["*"]
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        draining = self.drain_file is not None and os.path.exists(self.drain_file)
        if path in PROBE_PATHS:
            if draining and path == "/health":
                await _reply(
                    send,
                    503,
                    {"status": "draining", "in_flight": self.in_flight},
                    [(b"retry-after", str(RETRY_AFTER_S).encode())],
                )
                return
            await self.app(scope, receive, send)
            return
        if draining:
            await _reply(
                send,
                503,
                _error(
                    "the server is shutting down (scale-down or deploy) and takes no new requests; "
                    "retry, another container answers",
                    "ServiceUnavailable",
                    503,
                ),
                [(b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")],
            )
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
        started, streaming = False, False
        timed_out = asyncio.Event()

        async def tracking_send(message: Message) -> None:
            nonlocal started, streaming
            if timed_out.is_set():
                return  # the answer past the limit is ours (504 or the error event)
            if message.get("type") == "http.response.start":
                started = True
                streaming = any(
                    name.lower() == b"content-type" and b"text/event-stream" in value
                    for name, value in message.get("headers", [])
                )
            await send(message)

        async def receive_until_limit() -> Message:
            if timed_out.is_set():
                return {"type": "http.disconnect"}
            receiving = asyncio.ensure_future(receive())
            limit = asyncio.ensure_future(timed_out.wait())
            await asyncio.wait({receiving, limit}, return_when=asyncio.FIRST_COMPLETED)
            if receiving.done():
                limit.cancel()
                return receiving.result()
            receiving.cancel()
            return {"type": "http.disconnect"}  # what makes vLLM abort the request

        handler = asyncio.ensure_future(self.app(scope, receive_until_limit, tracking_send))
        try:
            done, _ = await asyncio.wait({handler}, timeout=self.timeout_s)
        except asyncio.CancelledError:  # the server is going away: so is the request
            handler.cancel()
            raise
        if handler in done:
            handler.result()  # the app's own exception, if any, as without a limit
            return
        timed_out.set()
        try:  # vLLM sees the disconnect, aborts the request in the engine and returns
            await asyncio.wait_for(handler, ABORT_WAIT_S)
        except Exception:  # noqa: BLE001 - past the limit, only our answer matters
            pass  # (wait_for cancelled a handler that ignored the disconnect)
        message = (
            f"the request ran longer than the service's limit of {self.timeout_s:g} s "
            f"(runtime.request_timeout_s) and was stopped; ask for fewer tokens "
            f"(max_tokens) or raise the limit"
        )
        error = _error(message, "RequestTimeout", 504)
        if not started:
            await _reply(send, 504, error, [])
        elif streaming:  # the stream's status is sent: it ends as vLLM ends a failed stream
            await send(
                {
                    "type": "http.response.body",
                    "more_body": True,
                    "body": b"data: " + json.dumps(error).encode() + b"\n\n",
                }
            )
            await send(
                {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}
            )
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _seconds(value: str | None) -> float | None:
    """A positive number of seconds from the environment, or None (no limit) when unset."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(
            f"{REQUEST_TIMEOUT_ENV}={value!r} is not a number of seconds; "
            f"set it to a positive number such as 1200, or unset it"
        ) from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(
            f"{REQUEST_TIMEOUT_ENV}={value!r} must be a positive, finite number "
            f"of seconds; set it to a value such as 1200, or unset it"
        )
    return seconds


def _origins(value: str | None) -> list[str]:
    """The allowed origins from the environment (a JSON list of strings), or []."""
    if not value:
        return []
    try:
        origins = json.loads(value)
    except ValueError:
        origins = None
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise ValueError(
            f"{ALLOWED_ORIGINS_ENV}={value!r} is not a JSON list of origins; set "
            f'it like ["https://app.example.com"], or unset it'
        )
    return origins


def _error(message: str, kind: str, status: int) -> dict[str, Any]:
    """vLLM's (OpenAI's) error shape, so clients parse it like the server's own errors."""
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


async def _reply(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
