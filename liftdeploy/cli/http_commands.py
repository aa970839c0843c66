"""health, warmup, smoke, loadtest: a deployed (or local) service checked over HTTP.

Each command takes the spec (or rendered service) and an environment, so the URL is looked up,
never typed into scripts: --url, then MODAL_ENDPOINT_URL, then Modal's lookup of the app.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liftdeploy.cli import common

if TYPE_CHECKING:
    from liftdeploy.client.api import Client, Health
    from liftdeploy.spec.model import ResolvedDeployment


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("health", help="probe /health once; exit 0 healthy, 1 otherwise")
    _add_target_options(p)
    p.add_argument(
        "--timeout",
        type=common.positive_seconds,
        default=10.0,
        metavar="S",
        dest="timeout_s",
        help="seconds to wait for the answer (default 10)",
    )
    p.set_defaults(handler=health)

    p = subparsers.add_parser(
        "warmup", help="poll /health until the service is ready (starts a cold container)"
    )
    _add_target_options(p)
    p.add_argument(
        "--timeout",
        type=common.positive_seconds,
        default=None,
        metavar="S",
        dest="timeout_s",
        help="give up after S seconds (default: the spec's startup timeout + 60 s)",
    )
    p.set_defaults(handler=warmup)

    p = subparsers.add_parser("smoke", help="one schema-constrained request, answer validated")
    _add_target_options(p)
    _add_request_options(p)
    p.set_defaults(handler=smoke)

    p = subparsers.add_parser(
        "loadtest", help="bounded load test: latency, first token, tokens/s, errors, cost"
    )
    _add_target_options(p)
    _add_request_options(p)
    p.add_argument(
        "--requests",
        type=_positive_int,
        default=50,
        metavar="N",
        help="requests to send in all (default 50)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="C",
        help="requests in flight at once (default 4)",
    )
    p.add_argument(
        "--duration",
        type=common.positive_seconds,
        default=None,
        metavar="S",
        dest="duration_s",
        help="start no request after S seconds",
    )
    p.set_defaults(handler=loadtest)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    common.add_spec_argument(parser)
    common.add_env_option(parser)
    parser.add_argument(
        "--url",
        metavar="URL",
        help="service base URL (default: MODAL_ENDPOINT_URL, then Modal's lookup)",
    )
    common.add_json_option(parser)


def _add_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schema",
        type=Path,
        metavar="FILE",
        help="JSON Schema file for the answer (default: a small status schema)",
    )
    parser.add_argument("--prompt", default=None, help="the user message")
    parser.add_argument(
        "--max-tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help="answer token limit (default 128)",
    )


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return number


def _client(args: argparse.Namespace) -> tuple[Client, ResolvedDeployment]:
    from liftdeploy.client.api import Client

    resolved = common.resolve(args.spec, args.env)
    return Client.for_deployment(resolved, url=args.url), resolved


def _request_options(args: argparse.Namespace) -> dict[str, Any]:
    from liftdeploy.spec.specfile import read_json

    options: dict[str, Any] = {}
    if args.schema:
        options["schema"] = read_json(args.schema)
    if args.prompt:
        options["prompt"] = args.prompt
    if args.max_tokens:
        options["max_tokens"] = args.max_tokens
    return options


def health(args: argparse.Namespace) -> int:
    client, resolved = _client(args)
    with client:
        result = client.health(timeout_s=args.timeout_s)
    if args.json:
        common.print_json(
            {
                "url": client.base_url,
                "environment": resolved.environment,
                "healthy": result.ok,
                "status_code": result.status_code,
                "detail": result.detail,
                "elapsed_s": result.elapsed_s,
            }
        )
    else:
        mark = "✓" if result.ok else "✗"
        print(
            f"{mark} {resolved.app_name} ({client.base_url}): {result.detail} "
            f"in {result.elapsed_s * 1000:.0f} ms"
        )
    return 0 if result.ok else 1


def warmup(args: argparse.Namespace) -> int:
    from liftdeploy.ops.http import warmup as run_warmup
    from liftdeploy.planner.report import planned_lifecycle

    client, resolved = _client(args)
    timeout_s = args.timeout_s or planned_lifecycle(resolved).startup_timeout_s + 60
    common.note(f"waiting for {resolved.app_name} at {client.base_url} (up to {timeout_s:.0f} s)…")

    def on_wait(elapsed_s: float, last: Health) -> None:
        common.note(f"  {elapsed_s:5.0f} s  not ready yet ({last.detail})")

    with client:
        result = run_warmup(client, timeout_s=timeout_s, on_wait=on_wait)
    if args.json:
        common.print_json(
            {
                "url": client.base_url,
                "environment": resolved.environment,
                "ready_after_s": result.ready_after_s,
                "probes": result.probes,
            }
        )
    else:
        print(
            f"✓ {resolved.app_name} ready after {result.ready_after_s:.1f} s "
            f"({result.probes} probe{'s' * (result.probes > 1)})"
        )
    return 0


def smoke(args: argparse.Namespace) -> int:
    from liftdeploy.ops.http import smoke as run_smoke

    client, resolved = _client(args)
    with client:
        answer = run_smoke(client, **_request_options(args))
    if args.json:
        common.print_json(
            {
                "url": client.base_url,
                "environment": resolved.environment,
                "answer": answer.value,
                "output_tokens": answer.output_tokens,
                "latency_s": answer.latency_s,
            }
        )
    else:
        print(
            f"✓ {resolved.app_name}: valid answer in {answer.latency_s * 1000:.0f} ms "
            f"({answer.output_tokens} tokens): {json.dumps(answer.value)[:200]}"
        )
    return 0


def loadtest(args: argparse.Namespace) -> int:
    from liftdeploy.ops.http import format_load_report
    from liftdeploy.ops.http import loadtest as run_loadtest

    client, resolved = _client(args)
    progress = _Progress()
    with client:
        report = run_loadtest(
            client,
            requests=args.requests,
            concurrency=args.concurrency,
            duration_s=args.duration_s,
            container_hour_usd=resolved.container_hour_usd(),
            on_progress=progress,
            **_request_options(args),
        )
    progress.finish()
    if args.json:
        common.print_json({"environment": resolved.environment, **report.to_dict()})
    else:
        print(format_load_report(report))
    return 0 if report.failed == 0 else 1


class _Progress:
    """One stderr line at most every second (and at the end), so logs stay short."""

    def __init__(self) -> None:
        self.last_print, self.shown = -1.0, ""

    def __call__(self, done: int, total: int, errors: dict[str, int], elapsed_s: float) -> None:
        if elapsed_s - self.last_print < 1.0 and done < total:
            return
        self.last_print = elapsed_s
        failed = sum(errors.values())
        self.shown = f"  {done}/{total} done, {failed} failed, {elapsed_s:.0f} s"
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{self.shown}")
            sys.stderr.flush()
        else:
            common.note(self.shown)

    def finish(self) -> None:
        if self.shown and sys.stderr.isatty():
            sys.stderr.write("\n")
