"""Modal-side operations through the `modal` CLI: deploy, download, status, rollback, logs, stop.

Every command is computed by a pure function (`deploy_command`, `download_command`,
`history_command`, `rollback_command`, `logs_command`, `stop_command`), so tests and `--dry-run` see the exact
argv, and run by one runner (`run_modal`), which turns any failure (modal not installed, not
logged in, non-zero exit) into an `OpsError` carrying the command's last stderr lines. Secrets never appear in an argv:
deploy passes only the environment name (LIFTDEPLOY_ENV); secret values live in Modal Secrets,
created by `liftdeploy.ops.modal_sdk.bootstrap`. Flags are those of modal 1.6.4's CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from liftdeploy.client.endpoints import ENDPOINT_URL_ENV as URL_VARIABLE
from liftdeploy.client.endpoints import SERVER_CLASS_NAME
from liftdeploy.errors import OpsError
from liftdeploy.render.regenerate import SPEC_FILE
from liftdeploy.spec.model import ResolvedDeployment, pinning_problem, revision_warnings

MODAL = "modal"
"""Program name in every built argv; `run_modal` resolves it to an executable."""

APP_FILE = "app.py"
DOWNLOAD_FUNCTION = "download_model"
"""The rendered app's function that fills the weights Volume."""
STDERR_TAIL_LINES = 12
"""How many of a failed command's last stderr lines an OpsError quotes."""

# Log lines `logs --errors` keeps: Python/vLLM level names, JSON log records at error level,
# tracebacks and the exception line that ends them.
_ERROR_LINE = re.compile(
    r"\b(ERROR|CRITICAL|FATAL)\b|Traceback \(most recent call last\)"
    r"|\"(levelname|level)\":\s*\"(error|critical|fatal)\""
    r"|^\s*[\w.]*(Error|Exception): ",
    re.IGNORECASE,
)
_VERSION = re.compile(r"^v?(\d+)$")
_APP_NOT_FOUND = re.compile(r"No App with name .* found", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    """One `modal` invocation: argv, extra environment variables (never secrets), directory."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def shell(self) -> str:
        """The command as a user would type it in a shell."""
        words = [f"{key}={shlex.quote(value)}" for key, value in self.env.items()]
        line = " ".join([*words, shlex.join(self.argv)])
        return f"cd {shlex.quote(str(self.cwd))} && {line}" if self.cwd else line


@dataclass(frozen=True)
class Service:
    """A spec file and, when it sits in a rendered service directory, the Modal app beside it."""

    spec_path: Path
    app_path: Path | None

    @property
    def directory(self) -> Path:
        return self.spec_path.parent


def locate_service(value: str | Path) -> Service:
    """SPEC as given on the command line: a spec file or a rendered service directory."""
    path = Path(value)
    spec_path = path / SPEC_FILE if path.is_dir() else path
    if not spec_path.is_file():
        problem = f"has no {SPEC_FILE}" if path.is_dir() else "no such file"
        raise OpsError(
            f"{path}: {problem}; pass a spec file or a service directory rendered by "
            f"`liftdeploy render`"
        )
    app_path = spec_path.parent / APP_FILE
    return Service(spec_path=spec_path, app_path=app_path if app_path.is_file() else None)


# --- pure command builders -------------------------------------------------------------------


def _env_args(resolved: ResolvedDeployment) -> list[str]:
    """Select the overlay's Modal environment; without one Modal uses the profile default."""
    return ["--env", resolved.modal_environment] if resolved.modal_environment else []


def deploy_command(resolved: ResolvedDeployment, app_path: Path, *, tag: str | None) -> Command:
    """`modal deploy` of a rendered app for one environment.

    The app module reads LIFTDEPLOY_ENV at deploy time to pick its overlay; `--name` pins the
    Modal app name to the one status, rollback and logs look up. Runs from the service directory
    so that Modal records the git commit in the app's deployment history.
    """
    argv = [MODAL, "deploy", *_env_args(resolved), "--name", resolved.app_name]
    if tag:
        argv += ["--tag", tag]
    argv += ["--strategy", resolved.runtime.deploy_strategy, app_path.name]
    return Command(argv, env={"LIFTDEPLOY_ENV": resolved.environment}, cwd=app_path.parent)


def download_command(resolved: ResolvedDeployment, app_path: Path) -> Command:
    """`modal run --detach app.py::download_model`: the app's own download function, with its
    time limit and retries, for one environment's pinned revision. `--detach` keeps a long
    download going when this terminal closes (`liftdeploy logs` shows how it ends)."""
    function_ref = f"{app_path.name}::{DOWNLOAD_FUNCTION}"
    argv = [MODAL, "run", "--detach", *_env_args(resolved), function_ref]
    return Command(argv, env={"LIFTDEPLOY_ENV": resolved.environment}, cwd=app_path.parent)


def history_command(resolved: ResolvedDeployment) -> Command:
    """`modal app history --json`: every deployed version with its commit and tag."""
    return Command([MODAL, "app", "history", resolved.app_name, *_env_args(resolved), "--json"])


def rollback_command(resolved: ResolvedDeployment, version: str | None = None) -> Command:
    """`modal app rollback APP [vN]`: redeploys a previous version (default: the one before)."""
    argv = [MODAL, "app", "rollback", resolved.app_name]
    if version:
        argv.append(normalize_version(version))
    argv += ["--strategy", resolved.runtime.deploy_strategy, *_env_args(resolved)]
    return Command(argv)


def logs_command(
    resolved: ResolvedDeployment, *, since: str | None = None, follow: bool = False
) -> Command:
    """`modal app logs APP`: recent entries (`--since 1h`) or a live stream (`--follow`)."""
    if follow and since:
        raise OpsError("--follow streams from now and cannot be combined with --since; drop one")
    argv = [MODAL, "app", "logs", resolved.app_name, *_env_args(resolved)]
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("--follow")
    return Command(argv)


def stop_command(resolved: ResolvedDeployment) -> Command:
    """`modal app stop APP --yes`: the kill switch. Every container of the environment's app ends
    at once and the app takes no more requests (its GPU bill stops) until the next deploy.
    `--yes` because liftdeploy asks first (production) and modal's own prompt has no stdin."""
    return Command([MODAL, "app", "stop", resolved.app_name, "--yes", *_env_args(resolved)])


def normalize_version(text: str) -> str:
    """`12` or `v12` -> `v12`, the form `modal app rollback` accepts."""
    match = _VERSION.match(text.strip())
    if not match:
        raise OpsError(
            f"version {text!r} is not a deployment version; use vN as listed by "
            f"`liftdeploy status` (e.g. v12)"
        )
    return f"v{int(match.group(1))}"


def is_error_line(line: str) -> bool:
    """Whether a log line reports an error (what `logs --errors` keeps)."""
    return bool(_ERROR_LINE.search(line))


# --- git ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitState:
    """The checkout a service directory belongs to."""

    commit: str
    dirty: bool

    @property
    def short(self) -> str:
        """Seven characters, as `modal app history` shows commits."""
        return self.commit[:7]

    @property
    def tag(self) -> str:
        """Deployment tag carrying the commit; `-dirty` marks uncommitted changes."""
        return f"{self.short}-dirty" if self.dirty else self.short


def git_state(directory: Path) -> GitState | None:
    """HEAD and dirtiness of the git checkout holding `directory`; None outside git."""
    if shutil.which("git") is None:
        return None
    head = _git(directory, "rev-parse", "HEAD")
    if head is None:
        return None
    # Same test as Modal's own commit record: any change, untracked files included.
    status = _git(directory, "status", "--porcelain")
    return GitState(commit=head, dirty=bool(status))


def _git(directory: Path, *args: str) -> str | None:
    result = subprocess.run(
        ["git", *args], cwd=directory, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


# --- deploy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployStep:
    """A checked deploy: the command to run and what to tell the user before running it."""

    command: Command
    resolved: ResolvedDeployment
    git: GitState | None
    notes: list[str]


def prepare_deploy(
    service: Service,
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


def prepare_download(service: Service, environment: str) -> Command:
    """The download of `environment`'s weights, refused for an unpinned production or a
    rendered app that no longer matches its spec (it would fetch another revision)."""
    resolved = _pinned_and_rendered(service, environment)
    assert service.app_path is not None
    _refuse_stale(service, then="download")
    return download_command(resolved, service.app_path)


def _pinned_and_rendered(service: Service, environment: str) -> ResolvedDeployment:
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


def _refuse_stale(service: Service, *, then: str = "deploy") -> None:
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


def production_notes(
    resolved: ResolvedDeployment, plan_lines: Sequence[str] = ()
) -> list[str]:
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


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployedVersion:
    """One row of `modal app history --json`."""

    version: str
    deployed_at: str
    deployed_by: str
    commit: str | None
    dirty: bool
    tag: str | None


def parse_history(text: str) -> list[DeployedVersion]:
    """Rows of `modal app history --json`, newest first.

    Modal writes keys from its column titles (version, time_deployed, client, deployed_by,
    commit, tag); `commit` is a 7-character hash with `*` when the tree was dirty, and `tag`
    is omitted when no deployment carried one.
    """
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpsError(f"`modal app history --json` printed something that is not JSON: {exc}")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise OpsError("`modal app history --json` printed JSON of an unexpected shape (expected "
                       "a list of versions); check that the modal client is 1.6.x")
    versions = []
    for row in rows:
        commit = row.get("commit") or None
        versions.append(DeployedVersion(
            version=str(row.get("version", "")),
            deployed_at=str(row.get("time_deployed") or ""),
            deployed_by=str(row.get("deployed_by") or ""),
            commit=commit.rstrip("*") if commit else None,
            dirty=bool(commit and commit.endswith("*")),
            tag=row.get("tag") or None,
        ))
    return sorted(versions, key=_version_number, reverse=True)


def _version_number(version: DeployedVersion) -> int:
    digits = version.version.lstrip("v")
    return int(digits) if digits.isdigit() else -1


@dataclass(frozen=True)
class EnvironmentStatus:
    """What one environment runs, compared with the checkout."""

    environment: str
    app_name: str
    current: DeployedVersion | None
    checkout: GitState | None

    @property
    def matches_checkout(self) -> bool | None:
        """True/False when both commits are known, None otherwise."""
        if self.current is None or self.current.commit is None or self.checkout is None:
            return None
        same = self.checkout.commit.startswith(self.current.commit)
        return same and self.current.dirty == self.checkout.dirty

    def to_dict(self) -> dict[str, object]:
        current = self.current
        return {
            "environment": self.environment,
            "app_name": self.app_name,
            "deployed": current is not None,
            "version": current.version if current else None,
            "commit": current.commit if current else None,
            "commit_dirty": current.dirty if current else None,
            "tag": current.tag if current else None,
            "deployed_at": current.deployed_at if current else None,
            "deployed_by": current.deployed_by if current else None,
            "checkout_commit": self.checkout.short if self.checkout else None,
            "checkout_dirty": self.checkout.dirty if self.checkout else None,
            "matches_checkout": self.matches_checkout,
        }


def environment_status(
    resolved: ResolvedDeployment, checkout: GitState | None
) -> EnvironmentStatus:
    """Ask Modal which version of this environment's app is deployed."""
    try:
        output = run_modal(history_command(resolved), capture=True)
    except ModalCommandError as exc:
        if not _APP_NOT_FOUND.search(exc.stderr_tail):
            raise
        current = None
    else:
        history = parse_history(output)
        current = history[0] if history else None
    return EnvironmentStatus(resolved.environment, resolved.app_name, current, checkout)


def format_status(status: EnvironmentStatus) -> str:
    """One line per environment for people."""
    head = f"{status.environment:<12} {status.app_name}: "
    current = status.current
    if current is None:
        return head + "not deployed"
    commit = (current.commit or "no commit") + ("*" if current.dirty else "")
    line = head + f"{current.version} commit {commit}"
    if current.tag:
        line += f" tag {current.tag}"
    if current.deployed_at:
        line += f", deployed {current.deployed_at}"
    if current.deployed_by:
        line += f" by {current.deployed_by}"
    verdict = {
        True: "matches this checkout",
        False: f"differs from this checkout ({status.checkout.tag if status.checkout else '?'})",
        None: "checkout commit unknown",
    }[status.matches_checkout]
    return f"{line}; {verdict}"


# --- the runner --------------------------------------------------------------------------------


class ModalCommandError(OpsError):
    """A `modal` command exited non-zero; carries its last stderr lines."""

    def __init__(
        self, command: Command, returncode: int, stderr_tail: str, *, echoed: bool = False
    ) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        message = f"`{shlex.join(command.argv)}` failed with exit code {returncode}"
        if "token missing" in stderr_tail.lower():
            message += (" — not logged in to Modal: run `modal token new` (or set MODAL_TOKEN_ID "
                        "and MODAL_TOKEN_SECRET) and retry")
        if echoed:
            message += " (its error output is above)"
        else:
            message += ":\n" + (stderr_tail.strip() or "(no output on stderr)")
        super().__init__(message)


def modal_executable() -> str:
    """The `modal` CLI: on PATH, else the one installed beside this Python (an unactivated venv)."""
    found = shutil.which(MODAL) or shutil.which(MODAL, path=str(Path(sys.executable).parent))
    if found is None:
        raise OpsError("the `modal` CLI is not installed; install it with `pip install modal`")
    return found


def run_modal(
    command: Command,
    *,
    capture: bool = False,
    line_filter: Callable[[str], bool] | None = None,
) -> str:
    """Run one command; the single place where liftdeploy starts `modal`.

    With `capture`, stdout is returned (and not shown); otherwise stdout lines that pass
    `line_filter` are printed as they come and stderr is passed through. Either way the last
    stderr lines are kept for the error raised on a non-zero exit.
    """
    argv = list(command.argv)
    if argv[0] == MODAL:
        argv[0] = modal_executable()
    try:
        process = subprocess.Popen(
            argv,
            cwd=command.cwd,
            env={**os.environ, **command.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise OpsError(f"cannot run `{argv[0]}`: {exc.strerror or exc}; is it installed?") from None

    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    echo_stderr = not capture

    def drain_stderr(stream: Iterable[str]) -> None:
        for line in stream:
            tail.append(line.rstrip("\n"))
            if echo_stderr:
                sys.stderr.write(line)
                sys.stderr.flush()

    reader = threading.Thread(target=drain_stderr, args=(process.stderr,), daemon=True)
    reader.start()
    captured: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if capture:
                captured.append(line)
            elif line_filter is None or line_filter(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        raise
    reader.join()
    if returncode != 0:
        raise ModalCommandError(command, returncode, "\n".join(tail), echoed=echo_stderr)
    return "".join(captured)
