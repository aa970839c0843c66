"""`liftdeploy alerts test`: prove the alert webhook and the error tracker reach a person.

The values are the ones the environment's Modal Secrets hold (LIFTDEPLOY_ALERT_WEBHOOK_URL,
SENTRY_DSN), taken from the caller's environment: Modal never hands a Secret's value back.
The webhook gets the message format the monitor posts; Sentry gets one event sent by sentry-sdk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from liftdeploy.errors import OpsError, first_line
from liftdeploy.runtime.errortracking import DSN_ENV, FLUSH_TIMEOUT_S
from liftdeploy.runtime.monitor import AlertNotSent, post_alert

if TYPE_CHECKING:
    from liftdeploy.ops.spend import SpendReport
    from liftdeploy.spec.model import ResolvedDeployment


def send_test_alert(resolved: ResolvedDeployment, webhook_url: str) -> str:
    """Post one test message to the webhook; returns the text sent."""
    alerts = resolved.observability.alerts
    assert alerts is not None
    text = (
        f"[{resolved.app_name}] TEST from `liftdeploy alerts test`: alerts for this service "
        f"arrive here (Modal Secret {alerts.webhook_secret})"
    )
    try:
        post_alert(webhook_url, text)
    except AlertNotSent as exc:
        raise OpsError(str(exc)) from None
    return text


def send_test_event(resolved: ResolvedDeployment, dsn: str) -> str:
    """Send one test event through sentry-sdk; returns its event id. Fails when the SDK's
    transport drops it (unreachable, refused, rate-limited): the SDK itself never raises."""
    try:
        import sentry_sdk
        from sentry_sdk.transport import HttpTransport
        from sentry_sdk.utils import BadDsn
    except ImportError:
        raise OpsError(
            "sentry-sdk is not installed here; `pip install sentry-sdk` to send the "
            "test event (the service's image installs it itself)"
        ) from None

    class RecordingTransport(HttpTransport):
        """sentry-sdk's own HTTP transport, remembering why an event was dropped."""

        dropped: list[str] = []

        def on_dropped_event(self, reason: str) -> None:
            self.dropped.append(reason)

    try:
        client = sentry_sdk.Client(
            dsn=dsn,
            environment=resolved.environment,
            release=resolved.app_name,
            default_integrations=False,
            transport=RecordingTransport,
        )
    except BadDsn as exc:
        raise OpsError(
            f"{DSN_ENV} is not a Sentry DSN ({first_line(exc)}); copy the DSN from "
            f"the Sentry project's Client Keys page"
        ) from None
    try:
        with sentry_sdk.new_scope() as scope:
            scope.set_client(client)
            scope.set_tag("liftdeploy.test", "true")
            event_id = scope.capture_message(
                f"[{resolved.app_name}] TEST from `liftdeploy alerts test`: error tracking works"
            )
        client.flush(timeout=FLUSH_TIMEOUT_S)
    finally:
        client.close(timeout=FLUSH_TIMEOUT_S)
    if RecordingTransport.dropped or not event_id:
        reason = RecordingTransport.dropped[0] if RecordingTransport.dropped else "not captured"
        reason = "could not reach it" if reason == "network" else reason.replace("_", " ")
        raise OpsError(
            f"Sentry did not accept the test event ({reason}); "
            f"check {DSN_ENV} and the project's rate limits"
        )
    return event_id


def send_spend_alerts(report: SpendReport, webhook_url: str) -> list[str]:
    """Post one message per environment whose spend has an error verdict (a day over its
    share of budget.max_monthly_usd, or the month over it); returns the texts sent. The
    monitor in the container cannot read the bill (Modal's billing report needs a workspace
    token), so `liftdeploy spend --alert`, run daily where that token is, raises this alert."""
    sent = []
    for env in report.environments:
        errors = [v.message for v in env.verdicts if v.level == "error"]
        if not errors:
            continue
        text = f"[{env.app_name}] ALERT spend over budget: " + "; ".join(errors)
        try:
            post_alert(webhook_url, text)
        except AlertNotSent as exc:
            raise OpsError(str(exc)) from None
        sent.append(text)
    return sent
