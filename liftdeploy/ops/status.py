"""`liftdeploy status`: which version each environment runs, compared with the checkout."""

from __future__ import annotations

import re
from dataclasses import dataclass

from liftdeploy.ops.git_state import GitState
from liftdeploy.ops.history import DeployedVersion, parse_history
from liftdeploy.ops.modal_commands import history_command
from liftdeploy.ops.modal_runner import ModalCommandError, run_modal
from liftdeploy.spec.model import ResolvedDeployment

_APP_NOT_FOUND = re.compile(r"No App with name .* found", re.IGNORECASE)


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
