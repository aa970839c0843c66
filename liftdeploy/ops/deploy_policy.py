"""What may be deployed where: the checks before a deploy or a weights download.

Production needs pinned weights and a committed git tree; every deploy needs a rendered app that
matches its spec and a plan that fits (`--skip-check` and `--allow-dirty` say otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from liftdeploy.client.endpoints import ENDPOINT_URL_ENV as URL_VARIABLE
from liftdeploy.client.endpoints import SERVER_CLASS_NAME
from liftdeploy.errors import OpsError
from liftdeploy.ops.git_state import GitState, git_state
from liftdeploy.ops.modal_commands import Command, deploy_command, download_command
from liftdeploy.ops.service_files import APP_FILE, ServiceFiles
from liftdeploy.spec.model import ResolvedDeployment, pinning_problem, revision_warnings


@dataclass(frozen=True)
class DeployStep:
    """A checked deploy: the command to run and what to tell the user before running it."""

    command: Command
    resolved: ResolvedDeployment
    git: GitState | None
    notes: list[str]


def prepare_deploy(
    service: ServiceFiles,
    environment: str,
    *,
    allow_dirty: bool = False,
    skip_check: bool = False,
) -> DeployStep:
    """Check that `service` may be deployed to `environment` and build the command.

    Refuses production with unpinned weights, a spec with no rendered app, a rendered app that
    drifted from its spec, and production from a dirty (or non-git) tree unless `allow_dirty`.
    """
    resolved = _pinned_and_rendered(service, environment)
    assert service.app_path is not None
    plan_lines: list[str] = []
    if not skip_check:
        _refuse_stale(service)
        plan_lines = _plan_lines(resolved)
    git = git_state(service.directory)
    if resolved.production and not allow_dirty:
        if git is None:
            raise OpsError(
                f"{service.directory} is not in a git checkout, so production would run a "
                f"version with no commit to roll back to; commit it to git or pass --allow-dirty"
            )
        if git.dirty:
            raise OpsError(
                f"the git tree of {service.directory} has uncommitted changes; commit them so "
                f"production runs a known commit ({git.short}), or pass --allow-dirty"
            )
    notes = revision_warnings(resolved)
    notes += production_notes(resolved, plan_lines) if resolved.production else []
    command = deploy_command(resolved, service.app_path, tag=git.tag if git else None)
    return DeployStep(command=command, resolved=resolved, git=git, notes=notes)


def prepare_download(service: ServiceFiles, environment: str) -> Command:
    """The download of `environment`'s weights, refused for an unpinned production or a
    rendered app that no longer matches its spec (it would fetch another revision)."""
    resolved = _pinned_and_rendered(service, environment)
    assert service.app_path is not None
    _refuse_stale(service, then="download")
    return download_command(resolved, service.app_path)


def _pinned_and_rendered(service: ServiceFiles, environment: str) -> ResolvedDeployment:
    from liftdeploy.spec.specfile import load_spec

    resolved = load_spec(service.spec_path).resolve(environment)
    problem = pinning_problem(resolved, str(service.spec_path))
    if problem:  # never skippable: production must name the weights it serves
        raise OpsError(problem)
    if service.app_path is None:
        raise OpsError(
            f"{service.spec_path}: no rendered {APP_FILE} beside this spec; run "
            f"`liftdeploy render {service.spec_path} -o DIR` and use DIR"
        )
    return resolved


def _refuse_stale(service: ServiceFiles, *, then: str = "deploy") -> None:
    from liftdeploy.render.service import check

    drift = check(service.directory)
    if drift:
        # First lines only (each entry may carry a diff); `liftdeploy check` shows them whole.
        shown = "; ".join(entry.splitlines()[0] for entry in drift[:3])
        more = f"; and {len(drift) - 3} more" if len(drift) > 3 else ""
        raise OpsError(
            f"{service.directory}: the rendered app is stale ({shown}{more}); re-render it with "
            f"`liftdeploy render {service.directory}`, review and commit, then {then} "
            f"(`liftdeploy check {service.directory}` shows the drift"
            + ("; --skip-check deploys it as it is)" if then == "deploy" else ")")
        )


def production_notes(resolved: ResolvedDeployment, plan_lines: Sequence[str] = ()) -> list[str]:
    """What to know before a production deploy: the always-on bill, the plan, the URL."""
    monthly = resolved.always_on_monthly_usd
    runtime = resolved.runtime
    if runtime.min_containers:
        notes = [
            f"always-on cost: ${monthly:,.0f}/month ({runtime.min_containers} x "
            f"{resolved.gpu.count} {resolved.gpu.type} x ${resolved.gpu_hour_usd:.2f}/h, billed "
            f"24/7; runtime.min_containers sets it)"
        ]
    else:
        notes = [
            "always-on cost: $0/month (runtime.min_containers is 0: containers start on demand "
            f"and stop after {runtime.scaledown_window_s} s idle; the first request waits for a "
            f"cold start)"
        ]
    notes += plan_lines
    notes.append(
        f"URL: printed once deployed; clients read it from {URL_VARIABLE} or look it up with "
        f"modal.Server.from_name({resolved.app_name!r}, {SERVER_CLASS_NAME!r}).get_url()"
    )
    return notes


def _plan_lines(resolved: ResolvedDeployment) -> list[str]:
    """The planner's warnings; a plan that does not fit refuses the deploy."""
    from liftdeploy.errors import PlanError
    from liftdeploy.planner.report import plan

    try:
        result = plan(resolved)
    except PlanError as exc:
        return [f"plan: not available ({exc})"]
    if not result.fits:
        problems = "; ".join(v.message for v in result.verdicts if v.level == "error")
        raise OpsError(
            f"the plan says {resolved.app_name} does not fit: {problems}; fix the spec "
            f"(see `liftdeploy plan`) or pass --skip-check"
        )
    return [f"plan: {v.level}: {v.message}" for v in result.verdicts if v.level != "ok"]
