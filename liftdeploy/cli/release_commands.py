"""release start|status|promote|abort|finish: a candidate beside production, judged, then
promoted or aborted. The work is in liftdeploy.ops.release; these handlers parse, print and
pick exit codes (status: 0 pass, 1 fail, 3 wait for more requests)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from liftdeploy.cli import common

if TYPE_CHECKING:
    from liftdeploy.ops.release import Release

EXIT_WAIT = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    release = subparsers.add_parser(
        "release",
        help="safe releases: a candidate beside production, judged, then promoted",
        description="Deploy the working tree as <app>-candidate beside production, send it a "
        "share of RoutedClient traffic (the share lives in the Modal Dict <app>-release), "
        "compare it with production on Modal's own counts, then promote or abort.",
    )
    actions = release.add_subparsers(dest="release_action", metavar="ACTION", required=True)

    p = actions.add_parser("start", help="deploy, check and open the candidate")
    common.add_spec_argument(p)
    p.add_argument(
        "--share",
        type=_percent,
        metavar="N%",
        help="share of client traffic for the candidate (default: release.share_percent)",
    )
    p.add_argument(
        "--timeout",
        type=common.positive_seconds,
        default=1800.0,
        metavar="S",
        help="seconds to wait for the candidate to become healthy (default 1800)",
    )
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="release a tree with uncommitted changes (tag gets -dirty)",
    )
    p.add_argument(
        "--skip-check",
        action="store_true",
        help="release even if the rendered app is stale or the plan says it won't fit",
    )
    p.add_argument("--dry-run", action="store_true", help="print the candidate's deploy command")
    p.set_defaults(handler=start)

    p = actions.add_parser(
        "status",
        help="candidate vs production over the release window, "
        "and the verdict (exit 0 pass, 1 fail, 3 wait)",
    )
    common.add_spec_argument(p)
    p.add_argument(
        "--source",
        choices=("modal", "metrics"),
        default="modal",
        help="modal: Modal's Server.stats over the release window (default); "
        "metrics: each server's vLLM /metrics since it started",
    )
    common.add_json_option(p)
    p.set_defaults(handler=status)

    for name, text in (
        (
            "promote",
            "deploy production at the candidate's commit (rolling), "
            "then stop the candidate; run again to finish an interrupted one",
        ),
        ("abort", "share 0, then stop the candidate; run again to finish an interrupted one"),
        (
            "finish",
            "promote on a passing verdict, abort otherwise (CI's step "
            "after the bake time; exit 1 when it aborted)",
        ),
    ):
        p = actions.add_parser(name, help=text)
        common.add_spec_argument(p)
        p.set_defaults(handler=globals()[name])


def _percent(value: str) -> float:
    return common.positive_number(value.strip().removesuffix("%"), "percent")


def _release(spec: str) -> Release:
    from liftdeploy.ops.release import ModalDictStore, Release
    from liftdeploy.ops.service_files import locate_service

    service = locate_service(spec)
    resolved = common.load(str(service.spec_path)).resolve()
    return Release(service, resolved, ModalDictStore(resolved))


def start(args: argparse.Namespace) -> int:
    if args.dry_run:
        from liftdeploy.ops.deploy_policy import prepare_deploy
        from liftdeploy.ops.release import candidate_deploy_command
        from liftdeploy.ops.service_files import locate_service

        service = locate_service(args.spec)
        resolved = common.load(str(service.spec_path)).resolve()
        step = prepare_deploy(
            service, resolved.environment, allow_dirty=args.allow_dirty, skip_check=args.skip_check
        )
        print(candidate_deploy_command(resolved, step.command).shell())
        return 0
    release = _release(args.spec)
    record = release.start(
        share_percent=args.share,
        allow_dirty=args.allow_dirty,
        skip_check=args.skip_check,
        timeout_s=args.timeout,
    )
    print(
        f"candidate {record['candidate_app']} ({record['tag']}) is healthy and takes "
        f"{record['share']:.0%} of RoutedClient traffic: {record['candidate_url']}"
    )
    common.note("next: `liftdeploy release status` after the bake time, then promote or abort")
    return 0


def status(args: argparse.Namespace) -> int:
    from liftdeploy.ops.release_verdict import format_table

    release = _release(args.spec)
    if args.source == "metrics":
        release.windows = _metrics_windows(release)
    candidate, production, verdict = release.status()
    if args.json:
        common.print_json(
            {
                "candidate": candidate.to_dict(),
                "production": production.to_dict(),
                "verdict": verdict.to_dict(),
            }
        )
    else:
        print(format_table(candidate, production))
        print(f"verdict: {verdict.outcome}: {'; '.join(verdict.reasons)}")
    return {"pass": 0, "fail": 1, "wait": EXIT_WAIT}[verdict.outcome]


def _metrics_windows(release: Release):  # type: ignore[no-untyped-def]
    from liftdeploy.client.api import Client
    from liftdeploy.ops.release_verdict import window_from_metrics

    def windows(resolved, since, until):  # type: ignore[no-untyped-def]
        record = release.record or {}
        candidate = Client.for_deployment(resolved, url=record.get("candidate_url"))
        production = Client.for_deployment(resolved)
        return (window_from_metrics(candidate.metrics()), window_from_metrics(production.metrics()))

    return windows


def promote(args: argparse.Namespace) -> int:
    print(_release(args.spec).promote())
    return 0


def abort(args: argparse.Namespace) -> int:
    print(_release(args.spec).abort())
    return 0


def finish(args: argparse.Namespace) -> int:
    release = _release(args.spec)
    _, _, verdict = release.status()
    print(f"verdict: {verdict.outcome}: {'; '.join(verdict.reasons)}")
    if verdict.outcome == "pass":
        print(release.promote())
        return 0
    print(release.abort())
    return 1
