"""The git checkout a service directory belongs to: HEAD and whether the tree is dirty.

Deploys tag each version with the commit (`GitState.tag`); `status` compares what runs with it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


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
