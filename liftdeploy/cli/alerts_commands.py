"""alerts test: send a test alert through the webhook and a test event through Sentry."""

from __future__ import annotations

import argparse
import os

from liftdeploy.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "alerts",
        help="check that alerts and error reports reach a person",
    )
    commands = p.add_subparsers(dest="alerts_command", metavar="COMMAND", required=True)
    t = commands.add_parser(
        "test",
        help="send a test alert through the webhook and a test event through Sentry",
        description="Send what an incident would send, with the values the environment's "
        "Secrets hold, read from this shell: LIFTDEPLOY_ALERT_WEBHOOK_URL (for "
        "observability.alerts.webhook_secret) and SENTRY_DSN (for "
        "observability.sentry_dsn_secret). Exit status 1 if anything was not delivered.",
    )
    common.add_spec_argument(t)
    common.add_env_option(t, required=True)
    t.set_defaults(handler=alerts_test)


def alerts_test(args: argparse.Namespace) -> int:
    from liftdeploy.errors import OpsError
    from liftdeploy.ops.alerts import send_test_alert, send_test_event
    from liftdeploy.runtime.errortracking import DSN_ENV
    from liftdeploy.runtime.monitor import ALERT_WEBHOOK_ENV

    resolved = common.resolve(args.spec, args.env)
    observability = resolved.observability
    if not (observability.alerts or observability.sentry_dsn_secret):
        raise OpsError(
            f"environment {resolved.environment!r} has neither "
            f"observability.alerts nor observability.sentry_dsn_secret; add them to "
            f"the spec (docs/operations.md, Monitoring and alerts)"
        )
    wanted = []
    if observability.alerts:
        wanted.append((ALERT_WEBHOOK_ENV, observability.alerts.webhook_secret))
    if observability.sentry_dsn_secret:
        wanted.append((DSN_ENV, observability.sentry_dsn_secret))
    missing = [
        f"{var} (the value in Modal Secret {secret})"
        for var, secret in wanted
        if not os.environ.get(var)
    ]
    if missing:
        raise OpsError(
            f"set {' and '.join(missing)} in this shell; Modal never hands Secret "
            f"values back, so the test sends with your copy"
        )
    if observability.alerts:
        send_test_alert(resolved, os.environ[ALERT_WEBHOOK_ENV])
        print(f"alert: test message posted to the webhook ({ALERT_WEBHOOK_ENV})")
    if observability.sentry_dsn_secret:
        event_id = send_test_event(resolved, os.environ[DSN_ENV])
        print(f"errors: test event {event_id} accepted by Sentry ({DSN_ENV})")
    return 0
