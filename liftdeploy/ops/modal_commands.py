"""The `modal` CLI commands liftdeploy runs, each built by a pure function.

`deploy_command`, `download_command`, `history_command`, `rollback_command`, `logs_command` and
`stop_command` return a `Command`, so tests and `--dry-run` see the exact argv;
`liftdeploy.ops.modal_runner.run_modal` runs them. Secrets never appear in an argv: deploy passes
only the environment name (LIFTDEPLOY_ENV); secret values live in Modal Secrets, created by
`liftdeploy.ops.modal_sdk.bootstrap`. Flags are those of modal 1.6.4's CLI.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from liftdeploy.errors import OpsError
from liftdeploy.spec.model import ResolvedDeployment

MODAL = "modal"
"""Program name in every built argv; `run_modal` resolves it to an executable."""

DOWNLOAD_FUNCTION = "download_model"
"""The rendered app's function that fills the weights Volume."""

# Log lines `logs --errors` keeps: Python/vLLM level names, JSON log records at error level,
# tracebacks and the exception line that ends them.
_ERROR_LINE = re.compile(
    r"\b(ERROR|CRITICAL|FATAL)\b|Traceback \(most recent call last\)"
    r"|\"(levelname|level)\":\s*\"(error|critical|fatal)\""
    r"|^\s*[\w.]*(Error|Exception): ",
    re.IGNORECASE,
)
_VERSION = re.compile(r"^v?(\d+)$")


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


def env_args(resolved: ResolvedDeployment) -> list[str]:
    """Select the overlay's Modal environment; without one Modal uses the profile default."""
    return ["--env", resolved.modal_environment] if resolved.modal_environment else []


def deploy_command(resolved: ResolvedDeployment, app_path: Path, *, tag: str | None) -> Command:
    """`modal deploy` of a rendered app for one environment.

    The app module reads LIFTDEPLOY_ENV at deploy time to pick its overlay; `--name` pins the
    Modal app name to the one status, rollback and logs look up. Runs from the service directory
    so that Modal records the git commit in the app's deployment history.
    """
    argv = [MODAL, "deploy", *env_args(resolved), "--name", resolved.app_name]
    if tag:
        argv += ["--tag", tag]
    argv += ["--strategy", resolved.runtime.deploy_strategy, app_path.name]
    return Command(argv, env={"LIFTDEPLOY_ENV": resolved.environment}, cwd=app_path.parent)


def download_command(resolved: ResolvedDeployment, app_path: Path) -> Command:
    """`modal run --detach app.py::download_model`: the app's own download function, with its
    time limit and retries, for one environment's pinned revision. `--detach` keeps a long
    download going when this terminal closes (`liftdeploy logs` shows how it ends)."""
    function_ref = f"{app_path.name}::{DOWNLOAD_FUNCTION}"
    argv = [MODAL, "run", "--detach", *env_args(resolved), function_ref]
    return Command(argv, env={"LIFTDEPLOY_ENV": resolved.environment}, cwd=app_path.parent)


def history_command(resolved: ResolvedDeployment) -> Command:
    """`modal app history --json`: every deployed version with its commit and tag."""
    return Command([MODAL, "app", "history", resolved.app_name, *env_args(resolved), "--json"])


def rollback_command(resolved: ResolvedDeployment, version: str | None = None) -> Command:
    """`modal app rollback APP [vN]`: redeploys a previous version (default: the one before)."""
    argv = [MODAL, "app", "rollback", resolved.app_name]
    if version:
        argv.append(normalize_version(version))
    argv += ["--strategy", resolved.runtime.deploy_strategy, *env_args(resolved)]
    return Command(argv)


def logs_command(
    resolved: ResolvedDeployment, *, since: str | None = None, follow: bool = False
) -> Command:
    """`modal app logs APP`: recent entries (`--since 1h`) or a live stream (`--follow`)."""
    if follow and since:
        raise OpsError("--follow streams from now and cannot be combined with --since; drop one")
    argv = [MODAL, "app", "logs", resolved.app_name, *env_args(resolved)]
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("--follow")
    return Command(argv)


def stop_command(resolved: ResolvedDeployment) -> Command:
    """`modal app stop APP --yes`: the kill switch. Every container of the environment's app ends
    at once and the app takes no more requests (its GPU bill stops) until the next deploy.
    `--yes` because liftdeploy asks first (production) and modal's own prompt has no stdin."""
    return Command([MODAL, "app", "stop", resolved.app_name, "--yes", *env_args(resolved)])


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
