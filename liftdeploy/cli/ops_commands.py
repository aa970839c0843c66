"""bootstrap, deploy, status, rollback, logs, stop, audit-endpoints: Modal-side operations.

The work is in liftdeploy.ops.modal_commands (modal CLI commands, run by ops.modal_runner),
liftdeploy.ops.deploy_policy (the checks before a deploy), liftdeploy.ops.status,
liftdeploy.ops.modal_sdk (bootstrap through Modal's SDK) and liftdeploy.ops.audit; these handlers
parse, print and pick exit codes.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from liftdeploy.cli import common

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bootstrap",
        help="create the Volumes, Dicts and Secrets an environment needs",
        description="Create what the environment needs and is missing, under the environment's "
        "own names. Secret values are read from environment variables of the key's name "
        "(HF_TOKEN, VLLM_API_KEY) or a hidden prompt, never from the command line. A missing "
        "storage.secrets Secret is yours to create (its keys are yours); exit 1 until it exists.",
    )
    common.add_spec_argument(p)
    common.add_env_option(p, required=True)
    _add_dry_run(p, "list what exists and what would be created; change nothing")
    common.add_json_option(p)
    p.set_defaults(handler=bootstrap)

    p = subparsers.add_parser("deploy", help="`modal deploy` a rendered service to an environment")
    common.add_spec_argument(p)
    common.add_env_option(p, required=True)
    _add_dry_run(p, "print the exact command and run nothing")
    p.add_argument(
        "--allow-dirty",
        action="store_true",
        help="deploy production from a tree with uncommitted changes (tag gets -dirty)",
    )
    p.add_argument(
        "--skip-check",
        action="store_true",
        help="deploy even if the rendered app is stale or the plan says it won't fit",
    )
    p.set_defaults(handler=deploy)

    p = subparsers.add_parser(
        "status", help="which version and commit each environment runs, vs this checkout"
    )
    common.add_spec_argument(p)
    common.add_env_option(p)
    p.set_defaults(handler=status)
    common.add_json_option(p)

    p = subparsers.add_parser("rollback", help="`modal app rollback` an environment's app")
    common.add_spec_argument(p)
    common.add_env_option(p, required=True)
    p.add_argument(
        "--to", metavar="VERSION", help="version to return to, e.g. v12 (default: the previous one)"
    )
    _add_dry_run(p, "print the exact command and run nothing")
    p.set_defaults(handler=rollback)

    p = subparsers.add_parser("logs", help="`modal app logs` of an environment's app")
    common.add_spec_argument(p)
    common.add_env_option(p, required=True)
    p.add_argument("--since", metavar="WHEN", help="entries since 1h, 30m, 2d or an ISO time")
    p.add_argument("--errors", action="store_true", help="only error lines and tracebacks")
    p.add_argument("--follow", "-f", action="store_true", help="stream new entries until Ctrl-C")
    p.set_defaults(handler=logs)

    p = subparsers.add_parser(
        "stop",
        help="the kill switch: `modal app stop` an environment's app",
        description="Stop the environment's Modal app: every container ends at once, in-flight "
        "requests fail and the GPU bill stops until the next `liftdeploy deploy`. Production asks "
        "you to type the app name unless --yes.",
    )
    common.add_spec_argument(p)
    common.add_env_option(p, required=True)
    p.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="stop production without asking (scripts, an incident)",
    )
    _add_dry_run(p, "print the exact command and run nothing")
    p.set_defaults(handler=stop)

    p = subparsers.add_parser(
        "audit-endpoints", help="find hard-coded endpoint URLs in a codebase (exit 1 if any)"
    )
    p.add_argument("path", metavar="PATH", help="file or directory to scan")
    common.add_json_option(p)
    p.set_defaults(handler=audit_endpoints)


def _add_dry_run(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--dry-run", action="store_true", help=text)


def bootstrap(args: argparse.Namespace) -> int:
    from liftdeploy.ops.modal_sdk import bootstrap as run_bootstrap

    resolved = common.resolve(args.spec, args.env)
    report = run_bootstrap(resolved, dry_run=args.dry_run)
    if args.json:
        common.print_json(report.to_dict())
        return 0
    where = report.modal_environment or "default"
    verb = "would bootstrap" if report.dry_run else "bootstrapped"
    print(f"{verb} {resolved.environment} (Modal environment: {where})")
    if report.offline_reason:
        common.note(f"cannot check what exists: {report.offline_reason}")
    for row in report.rows:
        print(f"  {row.format()}")
    if report.left_to_user and not report.dry_run:
        names = ", ".join(row.resource.name for row in report.left_to_user)
        common.note(f"not complete: create {names} as shown above, then deploy")
        return 1
    return 0


def deploy(args: argparse.Namespace) -> int:
    from liftdeploy.ops.deploy_policy import prepare_deploy
    from liftdeploy.ops.modal_runner import run_modal
    from liftdeploy.ops.service_files import locate_service

    step = prepare_deploy(
        locate_service(args.spec),
        args.env,
        allow_dirty=args.allow_dirty,
        skip_check=args.skip_check,
    )
    for text in step.notes:
        common.note(text)
    if step.git is None:
        common.note("not a git checkout: the deployment carries no commit tag")
    elif step.git.dirty:
        common.note(f"uncommitted changes: tagging the deployment {step.git.tag}")
    if args.dry_run:
        print(step.command.shell())
        return 0
    common.note(f"$ {step.command.shell()}")
    run_modal(step.command)
    _print_url(step.resolved)
    return 0


def _print_url(resolved: ResolvedDeployment) -> None:
    """The deployed server's URL, looked up as clients will; a failed lookup is only a note."""
    from liftdeploy.client.endpoints import ENDPOINT_URL_ENV, modal_server_url
    from liftdeploy.errors import LiftdeployError

    try:
        print(f"{ENDPOINT_URL_ENV}={modal_server_url(resolved)}")
    except LiftdeployError as exc:
        common.note(f"deployed, but the URL lookup failed: {exc}")


def status(args: argparse.Namespace) -> int:
    from liftdeploy.ops.git_state import git_state
    from liftdeploy.ops.service_files import locate_service
    from liftdeploy.ops.status import environment_status, format_status

    service = locate_service(args.spec)
    spec = common.load(str(service.spec_path))
    checkout = git_state(service.directory)
    environments = [args.env] if args.env else list(spec.environments)
    results = [environment_status(spec.resolve(env), checkout) for env in environments]
    if args.json:
        common.print_json([r.to_dict() for r in results])
    else:
        for result in results:
            print(format_status(result))
    return 0


def rollback(args: argparse.Namespace) -> int:
    from liftdeploy.ops.modal_commands import rollback_command
    from liftdeploy.ops.modal_runner import run_modal

    command = rollback_command(common.resolve(args.spec, args.env), args.to)
    if args.dry_run:
        print(command.shell())
        return 0
    common.note(f"$ {command.shell()}")
    run_modal(command)
    return 0


def stop(args: argparse.Namespace) -> int:
    from liftdeploy.ops.modal_commands import stop_command
    from liftdeploy.ops.modal_runner import run_modal

    resolved = common.resolve(args.spec, args.env)
    command = stop_command(resolved)
    if args.dry_run:
        print(command.shell())
        return 0
    if resolved.production and not args.yes:
        _confirm_stop(resolved.app_name)
    common.note(f"$ {command.shell()}")
    run_modal(command)
    common.note(
        f"stopped {resolved.app_name}; `liftdeploy deploy {args.spec} --env {args.env}` "
        f"starts it again"
    )
    return 0


def _confirm_stop(app_name: str) -> None:
    """Production's kill switch waits for the app's name typed back; anything else (or no
    terminal to ask on) stops nothing."""
    import sys

    from liftdeploy.errors import OpsError

    sys.stderr.write(
        f"stop production app {app_name}? Its containers end now and requests fail "
        f"until the next deploy. Type {app_name} to confirm: "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if not sys.stdin.isatty():  # a piped answer is not echoed: end the prompt's line
        sys.stderr.write("\n")
    if answer != app_name:
        got = f"got {answer!r}" if answer else "no answer"
        raise OpsError(
            f"not stopped: confirmation needed ({got}); type {app_name} when asked, or pass --yes"
        )


def logs(args: argparse.Namespace) -> int:
    from liftdeploy.ops.modal_commands import is_error_line, logs_command
    from liftdeploy.ops.modal_runner import run_modal

    resolved = common.resolve(args.spec, args.env)
    command = logs_command(resolved, since=args.since, follow=args.follow)
    run_modal(command, line_filter=is_error_line if args.errors else None)
    return 0


def audit_endpoints(args: argparse.Namespace) -> int:
    from liftdeploy.ops.audit import audit

    report = audit(args.path)
    if args.json:
        common.print_json(report.to_dict())
    else:
        for finding in report.findings:
            print(finding.format())
        files = len({f.path for f in report.findings})
        common.note(
            f"{len(report.findings)} hard-coded endpoint(s) in {files} file(s); "
            f"{report.files_scanned} file(s) scanned"
        )
    return 1 if report.findings else 0
