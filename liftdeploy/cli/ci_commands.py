"""ci-warmup: whether a CI run after a push starts a container to check the deploy.
ci-workflow: a service in a subfolder of its repository gets its workflow at the root."""

from __future__ import annotations

import argparse

from liftdeploy.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ci-warmup",
        help="print warmup=true|false: is a cold start within the CI budget",
        description="Print `warmup=true` or `warmup=false` (for $GITHUB_OUTPUT) and, on "
        "stderr, why: the plan's cold-start cost against budget.ci_warmup_max_usd (default: "
        "single-GPU services only).",
    )
    common.add_spec_argument(p)
    common.add_env_option(p, required=True)
    p.set_defaults(handler=ci_warmup)

    p = subparsers.add_parser(
        "ci-workflow",
        help="write a subfolder service's workflow where GitHub runs it (the repository root)",
        description="GitHub runs workflows only from the repository root. For the service in "
        "DIR (a subfolder of a git repository) write .github/workflows/deploy-<name>.yml at the "
        "root: the rendered workflow with its steps run in DIR and a push filtered to DIR's "
        "files. Run it again after each render.",
    )
    p.add_argument("directory", metavar="DIR", help="the rendered service (a subfolder)")
    p.set_defaults(handler=ci_workflow)


def ci_warmup(args: argparse.Namespace) -> int:
    from liftdeploy.planner.ci import ci_warmup as decide
    from liftdeploy.planner.report import planned_lifecycle

    resolved = common.resolve(args.spec, args.env)
    decision = decide(resolved, planned_lifecycle(resolved).startup_timeout_s)
    common.note(decision.reason)
    print(f"warmup={'true' if decision.warmup else 'false'}")
    return 0


def ci_workflow(args: argparse.Namespace) -> int:
    from pathlib import Path

    from liftdeploy.errors import RenderError
    from liftdeploy.files import write_inside
    from liftdeploy.render.template_version import WORKFLOW, repository_folder, workflow_at_root
    from liftdeploy.spec.specfile import load_spec

    service = Path(args.directory)
    workflow = service / WORKFLOW
    if not workflow.is_file():
        raise RenderError(f"{service}: no {WORKFLOW}; pass a rendered service's directory")
    place = repository_folder(service)
    if place is None:
        raise RenderError(
            f"{service} is not in a git repository; GitHub runs the workflow "
            f"of the repository it is pushed to (git init there)"
        )
    top, folder = place
    if folder == ".":
        raise RenderError(f"{service} is its repository's root: GitHub already runs its {WORKFLOW}")
    name = load_spec(service / "deployment.yaml").name
    target = top / ".github" / "workflows" / f"deploy-{name}.yml"
    write_inside(
        top,
        target.relative_to(top).as_posix(),
        workflow_at_root(workflow.read_text(encoding="utf-8"), folder, name),
    )
    common.note(f"wrote {target}: {name}'s workflow, its steps run in {folder}")
    return 0
