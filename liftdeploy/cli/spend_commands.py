"""spend: what each environment really cost, per day, against the plan and the budget.

The work is in liftdeploy.ops.spend (with ops.billing and ops.tokens); this handler picks the
window and environments, reads the report (Modal's, or a saved one), takes a token-counter
reading where it costs nothing, prints and picks the exit code (1 when something is over
budget).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from liftdeploy.cli import common

if TYPE_CHECKING:
    from liftdeploy.ops.tokens import ReadingLog
    from liftdeploy.spec.model import ResolvedDeployment


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "spend",
        help="what each environment really cost, per day, against the plan and the budget",
        description="Read Modal's billing report (hourly, by the tags every rendered app "
        "carries) and show per environment and day the GPU and other cost, the "
        "plan's always-on and worst case for the same hours, the day's share of "
        "budget.max_monthly_usd, the month to date and its projection, and real $ "
        "per million output tokens. Exit status 1 when something is over budget.",
    )
    common.add_spec_argument(p)
    common.add_env_or_all_option(p, verb="report")
    period = p.add_mutually_exclusive_group()
    period.add_argument(
        "--for",
        dest="period",
        metavar="PERIOD",
        help="today, yesterday, this-week, last-week, this-month, last-month or "
        "Nd (the last N days); default this-month",
    )
    period.add_argument("--since", metavar="DATE", help="from this UTC date (YYYY-MM-DD) to now")
    p.add_argument(
        "--until", metavar="DATE", help="with --since: end the window at this UTC date (exclusive)"
    )
    common.add_json_option(p)
    p.add_argument(
        "--report",
        metavar="FILE",
        type=Path,
        help="use a saved report (from --save-report, or `modal billing report "
        "--json -r h --show-resources -t liftdeploy-service,"
        "liftdeploy-environment`) instead of asking Modal",
    )
    p.add_argument(
        "--save-report",
        metavar="FILE",
        type=Path,
        help="also write the report Modal returned, to replay it with --report",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="the service's base URL for /metrics (one environment; default: "
        "MODAL_ENDPOINT_URL, else Modal's lookup)",
    )
    p.add_argument(
        "--read-metrics",
        action="store_true",
        help="read /metrics even with min_containers 0 (that starts a container if "
        "none is running)",
    )
    p.add_argument(
        "--readings",
        metavar="DIR",
        type=Path,
        help="folder of token-counter readings (default: ~/.local/state/liftdeploy/token-readings)",
    )
    p.add_argument(
        "--alert",
        action="store_true",
        help="post each environment that is over budget to the alert webhook "
        "(LIFTDEPLOY_ALERT_WEBHOOK_URL, the value the alerts Secret holds)",
    )
    p.set_defaults(handler=spend)


def spend(args: argparse.Namespace) -> int:
    from liftdeploy.client.endpoints import ENDPOINT_URL_ENV
    from liftdeploy.errors import OpsError
    from liftdeploy.ops import billing, tokens
    from liftdeploy.ops import spend as ops

    spec = common.load(args.spec)
    environments = (
        list(spec.environments) if args.all_envs else [spec.resolve(args.env).environment]
    )
    webhook_url = _alert_webhook() if args.alert else None
    if args.url and len(environments) > 1:
        raise OpsError("--url names one environment's service; pick it with --env ENV")
    window = ops.window_for(args.period, args.since, args.until)
    if args.report:
        items, source = billing.load_report(args.report), f"the saved report {args.report}"
    else:
        items, source = billing.fetch_report(*ops.report_span(window)), "Modal's billing report"
        if args.save_report:
            billing.save_report(items, args.save_report)
    readings, notes = {}, {}
    for env in environments:
        resolved = spec.resolve(env)
        log = tokens.ReadingLog.for_app(resolved.app_name, args.readings)
        if window.live and len(environments) > 1 and os.environ.get(ENDPOINT_URL_ENV):
            notes[env] = f"not read: {ENDPOINT_URL_ENV} names one service; read it with --env"
        elif window.live:
            notes[env] = _take_reading(resolved, args, log)
        readings[env] = log.load()
    report = ops.spend_report(
        spec, environments, items, window, source=source, readings=readings, token_notes=notes
    )
    if args.json:
        common.print_json(report.to_dict())
    else:
        print(ops.format_spend(report))
    if webhook_url:
        from liftdeploy.ops.alerts import send_spend_alerts

        for text in send_spend_alerts(report, webhook_url):
            common.note(f"alert sent: {text}")
    return 1 if report.over_budget else 0


def _alert_webhook() -> str:
    """The webhook URL for --alert, checked before Modal is asked for the bill."""
    from liftdeploy.errors import OpsError
    from liftdeploy.runtime.monitor import ALERT_WEBHOOK_ENV, BadURL, parse_url

    url = os.environ.get(ALERT_WEBHOOK_ENV, "").strip()
    fix = (
        f"export {ALERT_WEBHOOK_ENV}=https://... (the value in the spec's "
        f"observability.alerts.webhook_secret)"
    )
    if not url:
        raise OpsError(f"--alert posts to the alert webhook: {fix}")
    try:
        parse_url(url, source=ALERT_WEBHOOK_ENV, fix=fix)
    except BadURL as exc:
        raise OpsError(str(exc)) from None
    return url


def _take_reading(
    resolved: ResolvedDeployment,
    args: argparse.Namespace,
    log: ReadingLog,
) -> str | None:
    """Record one reading of the token counter; the reason when none was taken."""
    from liftdeploy.client.api import Client
    from liftdeploy.errors import LiftdeployError
    from liftdeploy.ops.tokens import read_tokens

    if not (args.url or args.read_metrics or resolved.runtime.min_containers):
        return (
            "not read: with min_containers 0 a /metrics request would start a container; "
            "pass --read-metrics to read it anyway"
        )
    try:
        with Client.for_deployment(resolved, url=args.url) as client:
            log.append(read_tokens(client))
    except LiftdeployError as exc:
        return f"/metrics not read: {exc}"
    return None
