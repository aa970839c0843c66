"""render, check: the Modal app and its files, generated from a spec through the Copier template."""

from __future__ import annotations

import argparse
from pathlib import Path

from liftdeploy.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render",
        help="render (or regenerate) a service dir from a spec, keeping hand edits",
        description="Render SPEC into a service directory through the Copier template. Run "
        "over an existing service (`liftdeploy render .`) it regenerates every file from the "
        "current spec and keeps your hand edits (three-way merge against the last render).",
    )
    common.add_spec_argument(p)
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="service directory (default: the rendered service SPEC belongs to)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="regenerate even though rendered files have uncommitted changes",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace rendered files with the fresh render, dropping hand edits",
    )
    p.add_argument(
        "--conflict-markers",
        action="store_true",
        help="on conflicts, write the files with standard conflict markers",
    )
    p.set_defaults(handler=render)

    p = subparsers.add_parser(
        "check",
        help="exit 1 when a rendered service no longer matches its spec (for CI); "
        "unpinned production weights are a warning, an error only with --env production",
    )
    p.add_argument(
        "path",
        nargs="?",
        default=".",
        metavar="PATH",
        help="a rendered service, or a folder of them such as examples/ (default: .)",
    )
    p.add_argument(
        "--env",
        "-e",
        dest="env",
        metavar="ENV",
        help="the environment about to be deployed: unpinned production weights fail "
        "the check only when ENV is production (deploy refuses them there anyway)",
    )
    common.add_json_option(p)
    p.set_defaults(handler=check)


def render(args: argparse.Namespace) -> int:
    from liftdeploy.errors import RenderError
    from liftdeploy.render.service import is_service
    from liftdeploy.render.service import render as render_service

    spec = common.spec_path(args.spec)
    out = Path(args.output) if args.output else spec.parent
    if not args.output and not is_service(out):
        raise RenderError(
            f"{spec} is not part of a rendered service; pass the directory to "
            f"render into with -o DIR"
        )
    notes: list[str] = []
    render_service(
        spec,
        out,
        force=args.force,
        overwrite=args.overwrite,
        conflict_markers=args.conflict_markers,
        notes=notes,
    )
    for text in notes:
        common.note(f"note: {text}")
    common.note(f"rendered {out} from {spec}")
    for text in ci_notes(out):
        common.note(f"note: {text}")
    _warn_about_fit(spec)
    return 0


def ci_notes(service: Path) -> list[str]:
    """What the CI workflow of a just-rendered service needs before its first run: an install
    source it can reach, and (in a subfolder of a repository) a place GitHub reads it from."""
    from liftdeploy.render.template_version import local_source_note, workflow_move_note

    return [text for text in (local_source_note(service), workflow_move_note(service)) if text]


def _warn_about_fit(spec: Path) -> None:
    """Rendering does not judge sizing, but says at once what `plan` (and `deploy`) would
    refuse, so a GPU that cannot hold the model is not found out at deploy time."""
    from liftdeploy.errors import PlanError
    from liftdeploy.planner.report import plan

    deployment = common.load(str(spec))
    for env in deployment.environments:
        try:
            verdicts = plan(deployment.resolve(env)).verdicts
        except PlanError as exc:  # an architecture the planner does not know
            common.note(f"  note: {env}: not sized ({exc})")
            continue
        for verdict in verdicts:
            if verdict.level == "error":
                common.note(
                    f"  warning: {env}: {verdict.message}; `liftdeploy plan {spec} "
                    f"--env {env}` for the fix (deploy refuses it)"
                )


def check(args: argparse.Namespace) -> int:
    from liftdeploy.render.regenerate import ANSWERS_FILE
    from liftdeploy.render.service import check as check_services
    from liftdeploy.render.service import is_service, unpinned_production
    from liftdeploy.render.template_version import local_source_note

    notes: list[str] = []
    drift = check_services(args.path, notes=notes)
    # Not drift: a fresh scaffold is in sync with unpinned weights, and only production's deploy
    # needs them pinned, so staging's CI is not blocked on them.
    unpinned = unpinned_production(args.path)
    refused = unpinned_production(args.path, environment=args.env) if args.env else []
    root = Path(args.path)
    services = (
        [root]
        if is_service(root)
        else sorted(p.parent for p in root.rglob(ANSWERS_FILE) if is_service(p.parent))
    )
    if args.json:
        common.print_json(
            {
                "path": args.path,
                "in_sync": not drift,
                "drift": drift,
                "unpinned_production": unpinned,
                "refused": refused,
                "notes": notes + [n for s in services if (n := local_source_note(s))],
            }
        )
        return 1 if drift or refused else 0
    for text in notes:
        common.note(f"note: {text}")
    for service in services:
        source_note = local_source_note(service)
        if source_note:
            common.note(f"note: {source_note}")
    if drift:
        common.note("out of date:\n" + "\n".join(drift))
    else:
        common.note(f"{args.path}: every rendered service matches its spec")
    if unpinned:
        common.note(
            f"{'error' if refused else 'warning'}: production weights not pinned (deploy "
            f"--env production refuses them; other environments deploy):\n" + "\n".join(unpinned)
        )
    return 1 if drift or refused else 0
