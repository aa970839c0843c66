"""Report what breaks inside the server container to Sentry.

Shipped into the image (with sentry-sdk) only when the spec names observability.sentry_dsn_secret;
that Secret sets SENTRY_DSN, which sentry-sdk reads itself. The app's enter hook starts error
tracking before vLLM, and a start-up failure is sent as one event carrying vLLM's last log lines
(the part a person needs, which the exception alone would not show).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from liftdeploy.runtime.server import ServerDied, ServerProcess

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
def reporting_start_failure(server: ServerProcess) -> Iterator[None]:
    """Send a ServerDied raised inside the block to Sentry, with the log tail, then re-raise
    (sent only when SENTRY_DSN is set, as start_error_tracking initialises only then)."""
    try:
        yield
    except ServerDied as exc:
        if not os.environ.get(DSN_ENV):
            raise
        import sentry_sdk

        with sentry_sdk.new_scope() as scope:
            scope.set_tag("liftdeploy.phase", "startup")
            # One string: Sentry trims lists in contexts to their first items.
            scope.set_context("vllm", {"command": " ".join(server.command),
                                       "log_tail": "\n".join(server.log_tail)})
            sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(timeout=FLUSH_TIMEOUT_S)
        raise
