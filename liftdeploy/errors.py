"""Errors liftdeploy raises on purpose: each message names the problem and the fix.

The CLI prints any `LiftdeployError` as one line (no traceback) and exits with its `exit_code`.
"""

from __future__ import annotations


class LiftdeployError(Exception):
    """Root of every error liftdeploy raises on purpose."""

    exit_code = 1


class SpecError(LiftdeployError):
    """A deployment spec is invalid: the message names the field, the value and the fix."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class SpecFileError(SpecError):
    """A spec file cannot be read or parsed (missing file, YAML syntax)."""


class EnvironmentNotFound(SpecError):
    """An environment name that the spec does not define."""


class PlanError(LiftdeployError):
    """The planner cannot size this deployment (unknown architecture, missing data)."""


class RenderError(LiftdeployError):
    """Rendering, checking or regenerating a service failed."""


class FileWriteError(LiftdeployError):
    """A file could not be written whole (full disk, permissions) or would be written through a
    symbolic link; what was there is left as it was."""


class DriftError(RenderError):
    """A rendered service no longer matches its spec."""


class TwinError(LiftdeployError):
    """The local CPU twin cannot start or stopped unexpectedly."""


class ClientError(LiftdeployError):
    """A request to a deployed or local service failed."""


class OpsError(LiftdeployError):
    """A Modal-side operation (deploy, rollback, logs...) failed or was refused."""


def first_line(error: object) -> str:
    """The first line of an exception's message (a library's own error, shown inside ours),
    or its type name when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
