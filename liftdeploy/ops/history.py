"""`modal app history --json` read into `DeployedVersion`s, newest first."""

from __future__ import annotations

import json
from dataclasses import dataclass

from liftdeploy.errors import OpsError


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
        raise OpsError(
            f"`modal app history --json` printed something that is not JSON: {exc}"
        ) from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise OpsError(
            "`modal app history --json` printed JSON of an unexpected shape (expected "
            "a list of versions); check that the modal client is 1.6.x"
        )
    versions = []
    for row in rows:
        commit = row.get("commit") or None
        versions.append(
            DeployedVersion(
                version=str(row.get("version", "")),
                deployed_at=str(row.get("time_deployed") or ""),
                deployed_by=str(row.get("deployed_by") or ""),
                commit=commit.rstrip("*") if commit else None,
                dirty=bool(commit and commit.endswith("*")),
                tag=row.get("tag") or None,
            )
        )
    return sorted(versions, key=_version_number, reverse=True)


def _version_number(version: DeployedVersion) -> int:
    digits = version.version.lstrip("v")
    return int(digits) if digits.isdigit() else -1
