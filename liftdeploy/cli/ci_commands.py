"""ci-warmup: whether a CI run after a push starts a container to check the deploy."""

from __future__ import annotations

import argparse

from liftdeploy.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ci-warmup", help="print warmup=true|false: is a cold start within the CI budget",
        description="Print `warmup=true` or `warmup=false` (for $GITHUB_OUTPUT) and, on "
        "stderr, why: the plan's cold-start cost against budget.ci_warmup_max_usd (default: "
        "single-GPU services only).",
    )
    common.add_spec_argument(p)
    common.add_env_option(p, required=True)
    p.set_defaults(handler=ci_warmup)


def ci_warmup(args: argparse.Namespace) -> int:
    from liftdeploy.planner.ci import ci_warmup as decide

    decision = decide(common.resolve(args.spec, args.env))
    common.note(decision.reason)
    print(f"warmup={'true' if decision.warmup else 'false'}")
    return 0
