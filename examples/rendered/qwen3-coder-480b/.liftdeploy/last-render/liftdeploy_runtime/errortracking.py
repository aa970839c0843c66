"""Report what breaks inside the server container to Sentry.

Shipped into the image (with sentry-sdk) only when the spec names observability.sentry_dsn_secret;
that Secret sets SENTRY_DSN, which sentry-sdk reads itself. The app's enter hook starts error
tracking before anything else, and any start-up failure (missing weights, vLLM exiting or not
healthy in time) is sent as one event, carrying vLLM's last log lines once vLLM runs (the part a
person needs, which the exception alone would not show).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from liftdeploy.runtime.server import ServerProcess

DSN_ENV = "SENTRY_DSN"
"""The variable the error-tracking Secret sets (sentry-sdk's own)."""
FLUSH_TIMEOUT_S = 10.0
"""How long a failing container waits for the event to leave before it exits."""


def start_error_tracking(*, environment: str, release: str) -> bool:
    """Initialise sentry-sdk from SENTRY_DSN; False (and nothing sent) when it is not set."""
    if not os.environ.get(DSN_ENV):
        return False
    import sentry_sdk

    sentry_sdk.init(environment=environment, release=release)
    return True


@contextmanager
def reporting_start_failure(owner: ServerProcess | object) -> Iterator[None]:
    """Send any exception raised inside the block (the enter hook's start-up: missing weights,
    vLLM exiting or not healthy in time) to Sentry, then re-raise. Once the server runs
    (`owner` is the ServerProcess, or the enter hook's object whose `server` it is), the event
    carries vLLM's command and last log lines. Sent only when SENTRY_DSN is set, as
    start_error_tracking initialises only then."""
    try:
        yield
    except Exception as exc:
        if not os.environ.get(DSN_ENV):
            raise
        import sentry_sdk

        server = owner if isinstance(owner, ServerProcess) else getattr(owner, "server", None)
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("liftdeploy.phase", "startup")
            if isinstance(server, ServerProcess):
                # One string: Sentry trims lists in contexts to their first items.
                scope.set_context(
                    "vllm",
                    {"command": " ".join(server.command), "log_tail": "\n".join(server.log_tail)},
                )
            sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(timeout=FLUSH_TIMEOUT_S)
        raise
