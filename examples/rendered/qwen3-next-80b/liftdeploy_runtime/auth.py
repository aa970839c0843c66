"""API-key gate for every route of the vLLM server (an ASGI middleware, standard library only).

vLLM checks `--api-key` / VLLM_API_KEY only under /v1, /v2, /inference and /cohere, while other
routes it registers (/invocations, /tokenize, /pooling, /score...) serve the model too. With a key
configured this gate asks for it everywhere except the health and metrics probes and CORS
preflights, and it runs first, so an unauthenticated caller always gets 401 — never another
middleware's 400, and never a buffered body. It also caps request bodies, which vLLM does not.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = frozenset({"/health", "/metrics", "/ping"})
"""Probes that must answer without a key (Modal's and the client's health checks, Prometheus)."""

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body accepted; far above any prompt that fits a context window."""


class ApiKeyGate:
    """Requires `Authorization: Bearer <VLLM_API_KEY>` on every non-probe route when the key
    is set, and refuses bodies over MAX_BODY_BYTES with 413."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.api_key = os.environ.get("VLLM_API_KEY") or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        if self.api_key and path not in OPEN_PATHS and scope.get("method") != "OPTIONS":
            if not hmac.compare_digest(_bearer(scope).encode(), self.api_key.encode()):
                await _reply(
                    send,
                    401,
                    "missing or wrong API key: send the header "
                    "`Authorization: Bearer <key>` (LIFTDEPLOY_API_KEY for liftdeploy's "
                    "client)",
                    "AuthenticationError",
                )
                return
        if _declared_length(scope) > MAX_BODY_BYTES:
            await _too_large(send)
            return
        await _capped_app(self.app, scope, receive, send)


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class _BodyTooLarge(Exception):
    pass


async def _capped_app(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Runs the app with a body sent without content-length (chunked) stopped at
    MAX_BODY_BYTES; then the answer is 413, whatever the app made of the interrupted read."""
    seen, over, started = 0, False, False

    async def capped_receive() -> Message:
        nonlocal seen, over
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                over = True
                raise _BodyTooLarge
        return message

    async def checked_send(message: Message) -> None:
        nonlocal started
        if over:
            return  # the app's answer to the interrupted read; 413 is sent below
        started = True
        await send(message)

    try:
        await app(scope, capped_receive, checked_send)
    except _BodyTooLarge:
        pass
    if over and not started:
        await _too_large(send)


async def _too_large(send: Send) -> None:
    await _reply(
        send,
        413,
        f"request body too large: over the limit of {MAX_BODY_BYTES} bytes; send a shorter prompt",
        "RequestTooLarge",
    )


async def _reply(send: Send, status: int, message: str, kind: str) -> None:
    body = json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
